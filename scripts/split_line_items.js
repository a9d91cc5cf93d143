// split_line_items.js turns one order event into one "order.line_item"
// event per line item (a split). An order without items is dropped.
// Each output event gets the id "<order event id>-<index>", assigned by
// hookbus because the objects below have no id.
//
// Use it as a pipeline step:  - transform: scripts/split_line_items.js

function transform(event, ctx) {
  const order = event.data || {};
  const items = Array.isArray(order.items) ? order.items : [];
  return items.map((item, i) => ({
    type: "order.line_item",
    source: event.source,
    subject: "orders/" + order.id + "/items/" + (i + 1),
    time: event.time,
    data: {
      order_id: order.id,
      line: i + 1,
      of: items.length,
      sku: item.sku,
      quantity: item.quantity || 1,
      unit_price_cents: Math.round(item.price * 100),
      total_cents: Math.round(item.price * 100) * (item.quantity || 1),
    },
    metadata: event.metadata,
  }));
}
