function transform(event, ctx) {
  if (event.data.mode === "throw") {
    throw new Error("boom for " + event.id);
  }
  if (event.data.mode === "loop") {
    while (true) {}
  }
  return event;
}
