package envelope

import (
	"fmt"
	"testing"
)

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

func TestPartitionTopics(t *testing.T) {
	if got := PartitionTopic("partner", 7); got != "hookbus.out.partner.p7" {
		t.Fatalf("PartitionTopic = %q", got)
	}
	for n := range Partitions {
		st, got, ok := PartitionOf(PartitionTopic("a-b", n))
		if !ok || got != n || st != SinkTopic("a-b") {
			t.Fatalf("PartitionOf(%d) = %q %d %v", n, st, got, ok)
		}
	}
	for _, topic := range []string{SinkTopic("p1"), DeliveriesTopic("x"), "hookbus.out.x.p64", "hookbus.out.x.p01", "hookbus.in.x.p1", "hookbus.out.x.pa"} {
		if _, _, ok := PartitionOf(topic); ok {
			t.Errorf("PartitionOf(%q) ok", topic)
		}
	}
	// FNV-1a 32 of "a" is 0xe40c292c.
	if got := Partition("a"); got != int(uint32(0xe40c292c)%Partitions) {
		t.Fatalf("Partition(a) = %d", got)
	}
	seen := map[int]bool{}
	for i := range 1000 {
		seen[Partition(fmt.Sprint("key-", i))] = true
	}
	if len(seen) != Partitions {
		t.Fatalf("1000 keys hit %d of %d partitions", len(seen), Partitions)
	}
}
