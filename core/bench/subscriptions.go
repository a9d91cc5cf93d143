package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// runSubscriptions measures a single webhook sink (Passthrough), then the
// Subscriptions scenario, and compares their deliveries/s.
func runSubscriptions(ctx context.Context, o Options) (Result, error) {
	alone := o
	alone.Scenario = Passthrough
	alone.Progress = nil
	ar, err := runHookbus(ctx, alone)
	if err != nil {
		return Result{Scenario: o.Scenario}, fmt.Errorf("single webhook sink: %w", err)
	}
	o.applications = []string{benchApplication}
	r, err := runHookbus(ctx, o)
	if err != nil {
		return r, err
	}
	r.DeliveriesPerS = r.EventsPerS * SubscriptionsPerEvent
	r.AloneEventsPerS = ar.EventsPerS
	if ar.EventsPerS > 0 {
		r.RelativeToAlone = r.DeliveriesPerS / ar.EventsPerS
	}
	if ar.Partial && !r.Partial {
		r.Partial, r.Reason = true, "single webhook sink: "+ar.Reason
	}
	return r, nil
}

// Defaults of the SubscriptionsDead scenario.
const (
	DefaultSubscriptions  = 1000
	DefaultAttemptTimeout = 5 * time.Second
)

// runSubscriptionsDead measures the healthy subscriptions alone (the dead
// ones left out) and beside the dead ones, and compares their healthy
// deliveries/s and the CPU each healthy delivery cost. The run without
// the dead goes first in odd rounds (Options.Round) and second in even
// ones, so that a machine whose load drifts during a round favours
// neither.
func runSubscriptionsDead(ctx context.Context, o Options) (Result, error) {
	if err := CheckDeadLayout(o.Subscriptions, max(o.DeadSubscriptions, 0)); err != nil {
		return Result{Scenario: o.Scenario}, err
	}
	alone := o
	alone.withoutDead = true
	if p := o.Progress; p != nil {
		alone.Progress = func(pr Progress) {
			pr.Phase = "without the dead: " + pr.Phase
			p(pr)
		}
	}
	var ar, r Result
	ran := [2]bool{}
	order := []bool{true, false} // without the dead first
	if o.Round%2 == 0 && o.Round > 0 {
		order = []bool{false, true}
	}
	for _, withoutDead := range order {
		if ctx.Err() != nil {
			break // interrupted: what ran is reported below
		}
		if withoutDead {
			res, err := runHookbus(ctx, alone)
			if err != nil {
				return Result{Scenario: o.Scenario}, fmt.Errorf("without the dead subscriptions: %w", err)
			}
			ar, ran[0] = res, true
			continue
		}
		res, err := runHookbus(ctx, o)
		if err != nil {
			return res, err
		}
		r, ran[1] = res, true
	}
	switch {
	case !ran[1]:
		// Interrupted before the run with the dead: the one without is
		// all there is.
		ar.AloneEventsPerS, ar.AloneDeliveriesPerS, ar.AloneCPUPerDelivery = ar.EventsPerS, ar.DeliveriesPerS, ar.CPUPerDelivery
		if !ar.Partial {
			ar.Partial, ar.Reason = true, "interrupted before the run with the dead subscriptions"
		}
		return ar, nil
	case !ran[0]:
		if !r.Partial {
			r.Partial, r.Reason = true, "interrupted before the run without the dead subscriptions"
		}
		return r, nil
	}
	r.AloneEventsPerS, r.AloneDeliveriesPerS, r.AloneCPUPerDelivery = ar.EventsPerS, ar.DeliveriesPerS, ar.CPUPerDelivery
	if ar.DeliveriesPerS > 0 {
		r.RelativeToAlone = r.DeliveriesPerS / ar.DeliveriesPerS
	}
	if r.CPUPerDelivery > 0 {
		r.CPURelativeToAlone = float64(ar.CPUPerDelivery) / float64(r.CPUPerDelivery)
	}
	if ar.Partial && !r.Partial {
		r.Partial, r.Reason = true, "without the dead subscriptions: "+ar.Reason
	}
	return r, nil
}

// CheckDeadLayout checks the sizes of the SubscriptionsDead scenario:
// applications of SubscriptionsPerEvent subscriptions each, and at least
// one healthy subscription in every application.
func CheckDeadLayout(subs, dead int) error {
	var errs []error
	if subs < SubscriptionsPerEvent || subs%SubscriptionsPerEvent != 0 {
		errs = append(errs, fmt.Errorf("subscriptions (--subscriptions): must be a positive multiple of %d (the subscriptions of one application), got %d",
			SubscriptionsPerEvent, subs))
	}
	if dead < 0 || dead*SubscriptionsPerEvent > subs*(SubscriptionsPerEvent-1) {
		errs = append(errs, fmt.Errorf("dead subscriptions (--dead-subscriptions): must be between 0 and %d of %d subscriptions (every application keeps a healthy one), got %d",
			subs*(SubscriptionsPerEvent-1)/SubscriptionsPerEvent, subs, dead))
	}
	return errors.Join(errs...)
}

// benchSub is one subscription a scenario creates.
type benchSub struct {
	App, URL string
}

// deadLayout is the SubscriptionsDead scenario's applications and
// subscriptions: subscription j belongs to application j/10, and the dead
// ones are spread evenly over them (with the defaults, the tenth
// subscription of every application is dead). Without the dead ones
// (withoutDead) the healthy subscriptions are the same.
type deadLayout struct {
	apps   []string
	subs   []benchSub
	perApp map[string]int // healthy subscriptions per application
	dead   int
}

func newDeadLayout(subs, dead int, healthyURL, deadURL string, withoutDead bool) deadLayout {
	l := deadLayout{perApp: map[string]int{}}
	for a := range subs / SubscriptionsPerEvent {
		l.apps = append(l.apps, "bench-"+strconv.Itoa(a))
	}
	for j := range subs {
		app := l.apps[j/SubscriptionsPerEvent]
		path := "a" + strconv.Itoa(j/SubscriptionsPerEvent) + "/s" + strconv.Itoa(j)
		if (j+1)*dead/subs > j*dead/subs {
			l.dead++
			if !withoutDead {
				l.subs = append(l.subs, benchSub{App: app, URL: deadURL + path})
			}
			continue
		}
		l.perApp[app]++
		l.subs = append(l.subs, benchSub{App: app, URL: healthyURL + path})
	}
	if withoutDead {
		l.dead = 0
	}
	return l
}

// createSubscriptions creates the applications and subscriptions through
// the management API of the hookbus at base, a few requests at a time.
func createSubscriptions(ctx context.Context, base string, subs []benchSub) error {
	cl := &http.Client{Timeout: time.Minute}
	defer cl.CloseIdleConnections()
	post := func(path string, body any) error {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+path, bytes.NewReader(b))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := cl.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
		if resp.StatusCode != http.StatusCreated {
			return fmt.Errorf("POST %s: HTTP %d: %s", path, resp.StatusCode, msg)
		}
		return nil
	}
	seen := map[string]bool{}
	for _, s := range subs {
		if !seen[s.App] {
			seen[s.App] = true
			if err := post("/v1/applications", map[string]any{"id": s.App, "name": s.App}); err != nil {
				return err
			}
		}
	}
	jobs := make(chan benchSub)
	errc := make(chan error, 1)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for s := range jobs {
				err := post("/v1/applications/"+s.App+"/subscriptions", map[string]any{"url": s.URL, "event_types": []string{"*"}, "secret": benchSecret})
				if err != nil {
					select {
					case errc <- err:
					default:
					}
				}
			}
		})
	}
feed:
	for _, s := range subs {
		select {
		case jobs <- s:
		case err := <-errc:
			errc <- err
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}
