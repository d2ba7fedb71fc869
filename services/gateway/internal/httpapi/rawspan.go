package httpapi

import (
	"errors"
	"fmt"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// The gateway passes chat's messages through as chat encoded them, in the
// API's shape already: a page of hundreds of them is the largest answer it
// writes, and decoding them into values, or into jsontext.Values, copies
// them. So a reply is decoded by jsonv2.Unmarshal into a type whose fields
// for them are rawSpan or itemSpans: Unmarshal parses its input in place,
// so the decoder's offsets, which these keep, are into that input, and
// the values are slices of it (rawSpan.in).

// unmarshalReply decodes raw, a reply that must be a JSON object, into v.
// Anything else is refused before it is decoded: Unmarshal would take a
// top-level null for a reply with nothing in it.
func unmarshalReply(raw []byte, v any) error {
	if jsontext.Value(raw).Kind() != '{' {
		return errors.New("not a JSON object")
	}
	return jsonv2.Unmarshal(raw, v)
}

// rawSpan is a JSON value as where it lies in the JSON being decoded, from
// its first byte to past its last; the zero rawSpan is an absent value.
type rawSpan [2]int64

// UnmarshalJSONFrom implements json.UnmarshalerFrom: it checks the value as
// the decoder reads it, and keeps its place rather than a copy.
func (s *rawSpan) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	v, err := dec.ReadValue()
	if err != nil {
		return err
	}
	end := dec.InputOffset()
	*s = rawSpan{end - int64(len(v)), end}
	return nil
}

// in returns the value s spans in raw, the JSON it was decoded from: a
// slice of raw, which appending to does not overwrite; nil if s is zero.
func (s rawSpan) in(raw []byte) jsontext.Value {
	if s == (rawSpan{}) {
		return nil
	}
	return raw[s[0]:s[1]:s[1]]
}

// itemSpans are the items of a JSON array of objects as where they lie in
// the JSON being decoded.
type itemSpans []rawSpan

// UnmarshalJSONFrom implements json.UnmarshalerFrom: it refuses an item
// that is not an object, and keeps each item's place.
func (sp *itemSpans) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	tok, err := dec.ReadToken()
	if err != nil {
		return err
	}
	if tok.Kind() != '[' {
		return fmt.Errorf("decode export messages: not an array")
	}
	for dec.PeekKind() != ']' {
		kind := dec.PeekKind()
		var item rawSpan
		if err := item.UnmarshalJSONFrom(dec); err != nil {
			return err
		}
		if kind != '{' {
			return fmt.Errorf("decode export message: not an object")
		}
		*sp = append(*sp, item)
	}
	_, err = dec.ReadToken()
	return err
}
