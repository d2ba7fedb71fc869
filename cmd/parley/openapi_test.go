package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// contract is the gateway's openapi.json as `parley all` serves it, loaded
// once: every test's traffic is held to the document clients are given.
var contract struct {
	once   sync.Once
	doc    *openapi3.T
	router routers.Router
	err    error
}

func loadContract(rt http.RoundTripper, base string) (*openapi3.T, routers.Router, error) {
	contract.once.Do(func() {
		openapi3filter.RegisterBodyDecoder("application/x-ndjson", decodeJSONLines)
		contract.doc, contract.router, contract.err = fetchContract(rt, base)
	})
	return contract.doc, contract.router, contract.err
}

// decodeJSONLines checks every line of a JSON Lines body against schema,
// the schema of one line, and returns the last line for the validator to
// check again: kin-openapi knows no JSON Lines.
func decodeJSONLines(body io.Reader, _ http.Header, schema *openapi3.SchemaRef, _ openapi3filter.EncodingFn) (any, error) {
	data, err := io.ReadAll(body)
	if err != nil {
		return nil, err
	}
	if !bytes.HasSuffix(data, []byte("\n")) {
		return nil, errors.New("JSON Lines body does not end with a newline")
	}
	var last any
	for i, line := range bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n")) {
		if err := json.Unmarshal(line, &last); err != nil {
			return nil, fmt.Errorf("line %d: %w", i+1, err)
		}
		if err := schema.Value.VisitJSON(last); err != nil {
			return nil, fmt.Errorf("line %d: %w", i+1, err)
		}
	}
	return last, nil
}

func fetchContract(rt http.RoundTripper, base string) (*openapi3.T, routers.Router, error) {
	req, err := http.NewRequest(http.MethodGet, base+"/v1/openapi.json", nil)
	if err != nil {
		return nil, nil, fmt.Errorf("openapi request: %w", err)
	}
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return nil, nil, fmt.Errorf("get openapi.json: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, fmt.Errorf("read openapi.json: %w", err)
	}
	doc, err := openapi3.NewLoader().LoadFromData(data)
	if err != nil {
		return nil, nil, fmt.Errorf("load openapi.json: %w", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, nil, fmt.Errorf("openapi.json is not a valid document: %w", err)
	}
	closeObjects(doc)
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, nil, fmt.Errorf("route openapi.json: %w", err)
	}
	return doc, router, nil
}

// contractTransport checks every request and response passing through it
// against openapi.json and fails the test on a mismatch: a response the
// document does not describe (status, headers, body — problem documents
// included), or a request the document calls invalid that the server did not
// refuse with a 4xx. Tests send invalid requests on purpose, so an invalid
// request alone is no failure.
type contractTransport struct {
	t    testing.TB
	next http.RoundTripper
}

// contractClient returns a client sending through the checker, over whatever
// transport the test put on http.DefaultClient.
func contractClient(t testing.TB) *http.Client {
	next := http.DefaultClient.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	return &http.Client{Transport: contractTransport{t: t, next: next}}
}

func (c contractTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	// A WebSocket upgrade hands the connection over: there is no response
	// body to check, and the frames are not what openapi.json describes.
	if strings.EqualFold(req.Header.Get("Upgrade"), "websocket") {
		return c.next.RoundTrip(req)
	}
	base := req.URL.Scheme + "://" + req.URL.Host
	doc, router, err := loadContract(c.next, base)
	if err != nil {
		c.t.Errorf("openapi contract: %v", err)
		return c.next.RoundTrip(req)
	}
	var reqBody []byte
	if req.Body != nil {
		if reqBody, err = io.ReadAll(req.Body); err != nil {
			return nil, fmt.Errorf("read request body: %w", err)
		}
		req.Body.Close()
		req.Body = io.NopCloser(bytes.NewReader(reqBody))
	}
	resp, err := c.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	respBody, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("read response body: %w", err)
	}
	resp.Body = io.NopCloser(bytes.NewReader(respBody))
	if err := checkExchange(doc, router, req, reqBody, resp, respBody); err != nil {
		c.t.Errorf("openapi.json and %s %s → %d disagree: %v\nresponse: %s", req.Method, req.URL.Path, resp.StatusCode, err, respBody)
	}
	return resp, nil
}

// closeObjects makes every object schema that lists its properties refuse
// others, so a field the server sends (or takes) that the document does not
// describe is a mismatch too, not silently allowed as JSON Schema would.
func closeObjects(doc *openapi3.T) {
	seen := map[*openapi3.Schema]bool{}
	var walk func(ref *openapi3.SchemaRef)
	walk = func(ref *openapi3.SchemaRef) {
		if ref == nil || ref.Value == nil || seen[ref.Value] {
			return
		}
		s := ref.Value
		seen[s] = true
		flattenAllOf(s)
		if len(s.Properties) > 0 && s.AdditionalProperties.Has == nil && s.AdditionalProperties.Schema == nil {
			closed := false
			s.AdditionalProperties.Has = &closed
		}
		for _, p := range s.Properties {
			walk(p)
		}
		walk(s.Items)
		walk(s.AdditionalProperties.Schema)
		for _, group := range []openapi3.SchemaRefs{s.AllOf, s.AnyOf, s.OneOf} {
			for _, sub := range group {
				walk(sub)
			}
		}
	}
	for _, s := range doc.Components.Schemas {
		walk(s)
	}
	for _, item := range doc.Paths.Map() {
		for _, op := range item.Operations() {
			if op.RequestBody != nil && op.RequestBody.Value != nil {
				for _, mt := range op.RequestBody.Value.Content {
					walk(mt.Schema)
				}
			}
			for _, r := range op.Responses.Map() {
				if r.Value != nil {
					for _, mt := range r.Value.Content {
						walk(mt.Schema)
					}
				}
			}
		}
	}
}

// flattenAllOf folds an allOf of objects into s itself: closed, each part
// would refuse the others' properties.
func flattenAllOf(s *openapi3.Schema) {
	if len(s.AllOf) == 0 {
		return
	}
	props := openapi3.Schemas{}
	for k, v := range s.Properties {
		props[k] = v
	}
	required := append([]string(nil), s.Required...)
	for _, part := range s.AllOf {
		for k, v := range part.Value.Properties {
			props[k] = v
		}
		required = append(required, part.Value.Required...)
	}
	s.AllOf = nil
	s.Type = &openapi3.Types{openapi3.TypeObject}
	s.Properties = props
	s.Required = required
}

func checkExchange(doc *openapi3.T, router routers.Router, req *http.Request, reqBody []byte, resp *http.Response, respBody []byte) error {
	probe := req.Clone(req.Context())
	probe.Body = io.NopCloser(bytes.NewReader(reqBody))
	route, params, err := router.FindRoute(probe)
	if err != nil {
		// A path or method the document does not have must be refused,
		// with a problem document like every other error.
		if resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusMethodNotAllowed {
			return fmt.Errorf("no operation for it (%w), yet not answered 404 or 405", err)
		}
		return checkProblem(doc, resp, respBody)
	}
	in := &openapi3filter.RequestValidationInput{
		Request:    probe,
		PathParams: params,
		Route:      route,
		Options: &openapi3filter.Options{
			SchemaValidationOptions:           []openapi3.SchemaValidationOption{openapi3.EnableFormatValidation()},
			RejectWhenRequestBodyNotSpecified: true,
			// Whether a token is good is the server's to say; the
			// document only says one is needed.
			AuthenticationFunc: func(_ context.Context, in *openapi3filter.AuthenticationInput) error {
				if !strings.HasPrefix(in.RequestValidationInput.Request.Header.Get("Authorization"), "Bearer ") {
					return errors.New("no bearer token")
				}
				return nil
			},
		},
	}
	if err := openapi3filter.ValidateRequest(req.Context(), in); err != nil {
		if resp.StatusCode < 400 || resp.StatusCode >= 500 {
			return fmt.Errorf("the request is invalid by the document (%w), yet not refused with a 4xx", err)
		}
	}
	return openapi3filter.ValidateResponse(req.Context(), &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 resp.StatusCode,
		Header:                 resp.Header,
		Body:                   io.NopCloser(bytes.NewReader(respBody)),
		Options: &openapi3filter.Options{
			IncludeResponseStatus:   true,
			SchemaValidationOptions: []openapi3.SchemaValidationOption{openapi3.EnableFormatValidation()},
		},
	})
}

func checkProblem(doc *openapi3.T, resp *http.Response, body []byte) error {
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
		return fmt.Errorf("content type %q, want application/problem+json", ct)
	}
	v, err := openapi3filter.RegisteredBodyDecoder("application/json")(bytes.NewReader(body), resp.Header, doc.Components.Schemas["Problem"], nil)
	if err != nil {
		return fmt.Errorf("problem body: %w", err)
	}
	if err := doc.Components.Schemas["Problem"].Value.VisitJSON(v); err != nil {
		return fmt.Errorf("problem body: %w", err)
	}
	return nil
}

// TestContractCheckCatchesMismatches keeps the checker honest: responses
// that stray from openapi.json must be reported, good ones must not.
func TestContractCheckCatchesMismatches(t *testing.T) {
	a, _ := testAll(t, t.TempDir())
	doc, router, err := loadContract(http.DefaultTransport, a.URL())
	if err != nil {
		t.Fatal(err)
	}
	problem := `{"type":"about:blank","title":"Unauthorized","status":401,"detail":"no token"}`
	tests := []struct {
		name, method, path, token, reqBody string
		status                             int
		contentType, respBody              string
		wantErr                            bool
	}{
		{"problem as documented", "GET", "/v1/tenants", "", "", 401, "application/problem+json", problem, false},
		{"problem without status", "GET", "/v1/tenants", "", "", 401, "application/problem+json", `{"title":"Unauthorized"}`, true},
		{"problem as plain JSON", "GET", "/v1/tenants", "", "", 401, "application/json", problem, true},
		{"undocumented status", "GET", "/v1/tenants", "", "", 418, "application/problem+json", problem, true},
		{"body not the schema", "GET", "/v1/tenants", "t", "", 200, "application/json", `{"tenants":7}`, true},
		{"undocumented field", "GET", "/v1/tenants", "", "", 401, "application/problem+json", `{"type":"about:blank","title":"Unauthorized","status":401,"trace":"x"}`, true},
		{"not a date-time", "POST", "/v1/conversations/c1/close", "t", "", 200, "application/json", `{"id":"c1","status":"closed","assignee":null,"created_at":"yesterday","last_message_at":"2026-01-01T00:00:00Z"}`, true},
		{"invalid request accepted", "POST", "/v1/conversations", "t", `{"text":7}`, 201, "application/json", `{}`, true},
		{"unknown path answered 200", "GET", "/v1/nowhere", "", "", 200, "application/json", `{}`, true},
		{"unknown path refused", "GET", "/v1/nowhere", "", "", 404, "application/problem+json", `{"type":"about:blank","title":"Not Found","status":404}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, a.URL()+tt.path, strings.NewReader(tt.reqBody))
			if err != nil {
				t.Fatal(err)
			}
			if tt.token != "" {
				req.Header.Set("Authorization", "Bearer "+tt.token)
			}
			if tt.reqBody != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			resp := &http.Response{StatusCode: tt.status, Header: http.Header{"Content-Type": {tt.contentType}}}
			err = checkExchange(doc, router, req, []byte(tt.reqBody), resp, []byte(tt.respBody))
			if (err != nil) != tt.wantErr {
				t.Errorf("checkExchange() error = %v, want error %v", err, tt.wantErr)
			}
		})
	}
}

// TestOperationsAnswerAsDocumented walks the operations and refusals the
// other end-to-end tests leave out, so the contract check sees them too.
func TestOperationsAnswerAsDocumented(t *testing.T) {
	dir := t.TempDir()
	a, _ := testAll(t, dir)
	base := a.URL()
	agent := staffToken(t, dir, "demo", "agent", "alice")
	admin := staffToken(t, dir, "demo", "admin", "ada")
	_, visitor := newVisitor(t, base, "demo")

	mustCall(t, base, "GET", "/readyz", "", nil, http.StatusOK)
	mustCall(t, base, "GET", "/v1/openapi.json", "", nil, http.StatusOK)
	visitors := "/v1/tenants/demo/visitors"
	mustCall(t, base, "POST", visitors, "", []byte(`{"consent":`), http.StatusBadRequest)
	mustCall(t, base, "POST", visitors, "", map[string]any{"consent": map[string]bool{}}, http.StatusUnprocessableEntity)

	mustCall(t, base, "POST", "/v1/conversations", "", map[string]any{"text": "hi"}, http.StatusUnauthorized)
	mustCall(t, base, "POST", "/v1/conversations", visitor, []byte(`{"text":`), http.StatusBadRequest)
	mustCall(t, base, "POST", "/v1/conversations", visitor, map[string]any{"text": ""}, http.StatusUnprocessableEntity)
	mustCall(t, base, "POST", "/v1/conversations", agent, map[string]any{"text": "hi"}, http.StatusForbidden)
	conv := mustCall(t, base, "POST", "/v1/conversations", visitor, map[string]any{"text": "hi"}, http.StatusCreated)["id"].(string)

	assign := "/v1/conversations/" + conv + "/assign"
	mustCall(t, base, "POST", assign, visitor, map[string]any{"agent_id": "alice"}, http.StatusForbidden)
	mustCall(t, base, "POST", assign, agent, map[string]any{"agent_id": "bob"}, http.StatusForbidden)
	mustCall(t, base, "POST", assign, agent, []byte(`{"agent_id":`), http.StatusBadRequest)
	mustCall(t, base, "POST", assign, admin, map[string]any{"agent_id": "no spaces"}, http.StatusUnprocessableEntity)
	mustCall(t, base, "POST", "/v1/conversations/nope/assign", admin, map[string]any{"agent_id": "alice"}, http.StatusNotFound)
	mustCall(t, base, "POST", assign, agent, map[string]any{"agent_id": "alice"}, http.StatusOK)
	mustCall(t, base, "POST", assign, admin, map[string]any{"agent_id": "bob"}, http.StatusOK)

	mustCall(t, base, "POST", "/v1/conversations/"+conv+"/rating", agent, map[string]any{"score": 5}, http.StatusForbidden)
	mustCall(t, base, "POST", "/v1/conversations/nope/close", agent, nil, http.StatusNotFound)
	mustCall(t, base, "POST", "/v1/conversations/"+conv+"/close", visitor, nil, http.StatusOK)
	call(t, base, "POST", "/v1/conversations/"+conv+"/close", visitor, nil)
	call(t, base, "POST", assign, admin, map[string]any{"agent_id": "alice"})

	mustCall(t, base, "PUT", "/v1/me/consent", "", map[string]any{"analytics": true, "network_data": false, "ai": false}, http.StatusUnauthorized)
	mustCall(t, base, "PUT", "/v1/me/consent", visitor, []byte(`{`), http.StatusBadRequest)
	mustCall(t, base, "PUT", "/v1/me/consent", visitor, map[string]any{"analytics": true}, http.StatusUnprocessableEntity)
	mustCall(t, base, "PUT", "/v1/me/consent", agent, map[string]any{"analytics": true, "network_data": false, "ai": false}, http.StatusForbidden)
	mustCall(t, base, "PUT", "/v1/me/consent", visitor, map[string]any{"analytics": false, "network_data": false, "ai": true}, http.StatusOK)
	if got := mustCall(t, base, "GET", "/v1/me/consent", visitor, nil, http.StatusOK); got["ai"] != true || got["analytics"] != false {
		t.Errorf("GET /v1/me/consent = %v, want ai only", got)
	}
	mustCall(t, base, "GET", "/v1/me/consent", agent, nil, http.StatusForbidden)
	mustCall(t, base, "GET", "/v1/me/consent", "", nil, http.StatusUnauthorized)
	for _, path := range []string{"/v1/settings", "/v1/audit", "/v1/audit/checkpoint", "/v1/me/export", "/v1/erasures/x", "/v1/metrics/conversations_opened"} {
		mustCall(t, base, "GET", path, "", nil, http.StatusUnauthorized)
	}
	mustCall(t, base, "GET", "/v1/me", agent, nil, http.StatusOK)
	mustCall(t, base, "GET", "/v1/me", staffToken(t, dir, "ghost", "agent", "alice"), nil, http.StatusNotFound)
	mustCall(t, base, "GET", "/v1/me", "", nil, http.StatusUnauthorized)
	mustCall(t, base, "DELETE", "/v1/me", "", nil, http.StatusUnauthorized)
	mustCall(t, base, "DELETE", "/v1/me", agent, nil, http.StatusForbidden)
	mustCall(t, base, "DELETE", "/v1/me", visitor, nil, http.StatusAccepted)
	mustCall(t, base, "POST", "/v1/conversations", visitor, map[string]any{"text": "again"}, http.StatusGone)
	mustCall(t, base, "GET", "/v1/me", visitor, nil, http.StatusForbidden)
	call(t, base, "PUT", "/v1/me/consent", visitor, map[string]any{"analytics": true, "network_data": false, "ai": false})
}
