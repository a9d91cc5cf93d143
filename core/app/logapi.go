package app

import "github.com/hookbus/hookbus/core/attempt"

// deliveryLogAPI is what the API's delivery-log routes read (the attempt
// log) and resend and recover through; nil interfaces, which leave those
// routes out, when the store keeps no delivery log.
func (a *App) deliveryLogAPI() (attempt.Store, attempt.Resender) {
	if a.Attempts == nil {
		return nil, nil
	}
	if rs := a.resender(); rs != nil {
		return a.Attempts, rs
	}
	return a.Attempts, nil
}
