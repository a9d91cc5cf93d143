package envelope

import "testing"

// Topic names are in the brokers' data: a queue written by one version is
// read by the next, so they never change.
func TestTopicNames(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{SourceTopic("shop"), "hookbus.in.shop"},
		{SinkTopic("partner-1_a"), "hookbus.out.partner-1_a"},
		{SinkTopic("a b/ü.x"), "hookbus.out.a~20b~2f~fc~2ex"},
		{DeliveriesTopic("partners"), "hookbus.out.partners.deliveries"},
		{RetryTopic("partner"), "hookbus.retry.partner"},
		{DeadLetterTopic, "hookbus.dead.all"},
	} {
		if tc.got != tc.want {
			t.Errorf("topic %q, want %q", tc.got, tc.want)
		}
	}
}
