// only_paid.js keeps paid orders and filters out every other event.
//
// Use it as a pipeline step:  - filter: scripts/only_paid.js

function filter(event, ctx) {
  return event.type === "order.paid";
}
