package chatapi_test

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/parley-chat/parley/pkg/chatapi"
)

func TestReadPages(t *testing.T) {
	errDown := errors.New("down")
	tests := []struct {
		name string
		// give maps a cursor ("" for the first page) to the Next of its
		// page ("" for the last) or, for "fail", to an error.
		give      map[string]string
		wantAsked []string
		wantErr   bool
	}{
		{"one page", map[string]string{"": ""}, []string{""}, false},
		{"three pages", map[string]string{"": "b", "b": "d", "d": ""}, []string{"", "b", "d"}, false},
		{"an error stops", map[string]string{"": "b", "b": "fail"}, []string{"", "b"}, true},
		{"a page that does not move on", map[string]string{"": "b", "b": "b"}, []string{"", "b"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var asked []string
			err := chatapi.ReadPages(func(after *string) (*string, error) {
				pg := chatapi.PageAfter(after)
				if (after == nil) != (pg.After == "") {
					t.Fatalf("PageAfter(%v) = %+v", after, pg)
				}
				asked = append(asked, pg.After)
				next, ok := tt.give[pg.After]
				switch {
				case !ok:
					t.Fatalf("asked for the page after %q, which no page named", pg.After)
				case next == "fail":
					return nil, errDown
				case next == "":
					return nil, nil
				}
				return &next, nil
			})
			if (err != nil) != tt.wantErr {
				t.Errorf("ReadPages() error = %v, want error %v", err, tt.wantErr)
			}
			if tt.give["b"] == "fail" && !errors.Is(err, errDown) {
				t.Errorf("ReadPages() error = %v, want the page's error", err)
			}
			if diff := cmp.Diff(tt.wantAsked, asked); diff != "" {
				t.Errorf("ReadPages() asked for pages (-want +got):\n%s", diff)
			}
		})
	}
}
