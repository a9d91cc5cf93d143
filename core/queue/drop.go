package queue

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// DropNamespace removes everything one namespace keeps on an external
// broker: streams and consumers (nats), stream keys and their groups
// (redis), or tables (postgres). It is for decommissioning a deployment
// and for tests that share a server; queued messages are lost.
func DropNamespace(ctx context.Context, driver, url, namespace string) error {
	switch driver {
	case "nats":
		return dropJetStream(ctx, url, namespace)
	case "redis":
		return dropRedis(ctx, url, namespace)
	case "postgres":
		return dropPostgres(ctx, url, namespace)
	}
	return fmt.Errorf("queue: driver %q keeps nothing on an external server", driver)
}

func dropRedis(ctx context.Context, url, namespace string) error {
	opts, err := redis.ParseURL(url)
	if err != nil {
		return err
	}
	c := redis.NewClient(opts)
	defer c.Close()
	iter := c.Scan(ctx, 0, namespace+":*", 1000).Iterator()
	for iter.Next(ctx) {
		if err := c.Del(ctx, iter.Val()).Err(); err != nil {
			return err
		}
	}
	return iter.Err()
}

func dropPostgres(ctx context.Context, url, namespace string) error {
	db, err := sql.Open("pgx", url)
	if err != nil {
		return err
	}
	defer db.Close()
	// The driver's tables only: another namespace may start with this one
	// ("ns" and "ns_eu").
	rows, err := db.QueryContext(ctx, `SELECT tablename FROM pg_tables WHERE schemaname = current_schema()
		AND (starts_with(tablename, $1) OR starts_with(tablename, $2) OR tablename = $3 OR tablename = $4)`,
		namespace+"_msg_", namespace+"_off_", namespace+"_delayed", namespace+"_delivery_counts")
	if err != nil {
		return err
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return err
		}
		names = append(names, n)
	}
	rows.Close()
	for _, n := range names {
		if _, err := db.ExecContext(ctx, `DROP TABLE IF EXISTS `+pgIdent(n)); err != nil {
			return err
		}
	}
	return nil
}
