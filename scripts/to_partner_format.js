// to_partner_format.js reshapes a shop order event into the envelope a
// partner expects: a namespaced type, amounts in integer cents, an upper-case
// currency, the customer e-mail lifted to the top of data, and a format tag
// in metadata. The event id is kept, so retries stay idempotent.
//
// Use it as a pipeline step:  - transform: scripts/to_partner_format.js

function cents(amount) {
  if (typeof amount !== "number" || !isFinite(amount)) {
    throw new TypeError("data.amount must be a number, got " + JSON.stringify(amount));
  }
  return Math.round(amount * 100);
}

function transform(event, ctx) {
  const order = event.data || {};
  const items = order.items || [];
  return {
    id: event.id,
    type: "partner." + event.type,
    source: event.source,
    subject: order.id ? "orders/" + order.id : event.subject,
    time: event.time,
    data: {
      order_id: order.id,
      customer_email: (order.customer && order.customer.email) || null,
      amount_cents: cents(order.amount),
      currency: String(order.currency || "usd").toUpperCase(),
      item_count: items.reduce((n, item) => n + (item.quantity || 1), 0),
    },
    metadata: Object.assign({}, event.metadata, { format: "partner-v1" }),
  };
}
