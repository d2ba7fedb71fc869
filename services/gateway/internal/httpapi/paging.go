package httpapi

import (
	"fmt"
	"net/http"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/chatapi"
)

// paged reads a paged answer of the chat service whole with
// chatapi.ReadPages, one bus request a page: args builds the arguments of
// the page after a cursor (nil: the first page), and take keeps a page's
// items and returns its Next.
func paged[C comparable, R any](a *API, r *http.Request, subject string, p auth.Principal, args func(after *C) any, take func(R) *C) error {
	err := chatapi.ReadPages(func(after *C) (*C, error) {
		var res R
		if err := a.call(r, subject, p, args(after), &res); err != nil {
			return nil, err
		}
		return take(res), nil
	})
	if err != nil {
		return fmt.Errorf("page through %s: %w", subject, err)
	}
	return nil
}
