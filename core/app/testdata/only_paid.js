function filter(event, ctx) {
  return event.type === "order.paid";
}
