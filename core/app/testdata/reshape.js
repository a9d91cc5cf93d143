// Reshapes an order into the partner format; splits bundles into one event per item.
function transform(event, ctx) {
  if (event.type === "order.bundle") {
    return event.data.items.map(function (it, i) {
      return { id: event.id + "-" + i, type: "order.item", source: event.source, data: { sku: it, sink: ctx.sink } };
    });
  }
  if (event.data && event.data.drop) {
    return null;
  }
  event.data = { order: event.data.order_id, cents: Math.round(event.data.amount * 100), pipeline: ctx.pipeline };
  return event;
}
