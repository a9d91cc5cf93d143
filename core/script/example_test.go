package script_test

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/hookbus/hookbus/core/script"
	"github.com/hookbus/hookbus/sdk"
)

func ExampleCompileSource() {
	s, err := script.CompileSource("cents.js", `
function filter(event) { return event.type === "order.paid" }
function transform(event, ctx) {
  event.data.amount_cents = Math.round(event.data.amount * 100);
  event.metadata = {pipeline: ctx.pipeline};
  return event;
}`, script.Options{})
	if err != nil {
		panic(err)
	}
	ev := sdk.Event{ID: "evt_1", Type: "order.paid", Data: json.RawMessage(`{"amount":19.99}`)}
	r, err := s.Run(context.Background(), ev, script.Context{Pipeline: "paid-orders", Attempt: 1})
	if err != nil {
		panic(err)
	}
	fmt.Printf("%s", r.JSON())
	// Output:
	// {
	//   "kept": true,
	//   "events": [
	//     {
	//       "id": "evt_1",
	//       "type": "order.paid",
	//       "data": {
	//         "amount": 19.99,
	//         "amount_cents": 1999
	//       },
	//       "metadata": {
	//         "pipeline": "paid-orders"
	//       }
	//     }
	//   ]
	// }
}
