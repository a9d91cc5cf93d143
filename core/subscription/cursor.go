package subscription

import "errors"

// ErrBadCursor: a Page's Cursor is not one a list of this store returned
// (a client made it up or damaged it). The API answers it as a
// validation error of the cursor parameter.
var ErrBadCursor = errors.New("invalid page cursor")
