// orders_digest.js: one "orders.digest" event per customer and window,
// for an aggregate step keyed by data.customer_id:
//
//   - aggregate: {key: data.customer_id, window: 1m, max_events: 100, script: scripts/orders_digest.js}
//
// The digest carries the count, the total per currency and the order ids;
// a window of refunds only closes into nothing (its events are filtered).
function aggregate(events, ctx) {
  var totals = {};
  var orders = [];
  for (var i = 0; i < events.length; i++) {
    var e = events[i];
    if (e.type !== "order.paid") continue;
    var cur = e.data.currency || "eur";
    totals[cur] = (totals[cur] || 0) + e.data.amount;
    orders.push(e.data.id);
  }
  if (orders.length === 0) return null;
  return {
    type: "orders.digest",
    subject: ctx.key,
    data: {
      customer_id: ctx.key,
      orders: orders.length,
      totals: totals,
      order_ids: orders,
      from: ctx.window_start,
      to: ctx.window_end
    }
  };
}
