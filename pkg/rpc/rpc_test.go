package rpc_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/rpc"
)

type echoArgs struct {
	Text string `json:"text"`
}

func TestCallServePing(t *testing.T) {
	s := natstest.Start(t, "")
	nc, _ := natstest.Connect(t, s)
	ctx := t.Context()
	var calls atomic.Int64
	_, err := rpc.Serve(ctx, nc, slog.New(slog.DiscardHandler), "test.echo", "q", rpc.Handle(func(_ context.Context, a echoArgs) (echoArgs, error) {
		calls.Add(1)
		switch a.Text {
		case "":
			return echoArgs{}, rpc.Errorf(rpc.CodeInvalid, "empty text")
		case "boom":
			return echoArgs{}, errors.New("database on fire")
		}
		return a, nil
	}))
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		give     string
		want     string
		wantCode rpc.Code
	}{
		{name: "result", give: "hi", want: "hi"},
		{name: "coded error crosses the wire", give: "", wantCode: rpc.CodeInvalid},
		{name: "other errors are internal and say nothing", give: "boom", wantCode: rpc.CodeInternal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got echoArgs
			err := rpc.Call(ctx, nc, "test.echo", echoArgs{Text: tt.give}, &got)
			if tt.wantCode != "" {
				if code := rpc.CodeOf(err); code != tt.wantCode {
					t.Fatalf("Call(%q) code = %v (%v), want %v", tt.give, code, err, tt.wantCode)
				}
				if tt.wantCode == rpc.CodeInternal && err.Error() != "internal: internal error" {
					t.Errorf("internal error leaks its cause: %v", err)
				}
				return
			}
			if err != nil || got.Text != tt.want {
				t.Errorf("Call(%q) = %q, %v; want %q", tt.give, got.Text, err, tt.want)
			}
		})
	}

	before := calls.Load()
	if err := rpc.Ping(ctx, nc, "test.echo"); err != nil {
		t.Errorf("Ping(served) = %v, want nil", err)
	}
	if calls.Load() != before {
		t.Error("Ping called the handler")
	}
	if err := rpc.Ping(ctx, nc, "test.nobody"); !errors.Is(err, nats.ErrNoResponders) {
		t.Errorf("Ping(unserved) = %v, want %v", err, nats.ErrNoResponders)
	}
	if code := rpc.CodeOf(rpc.Call(ctx, nc, "test.nobody", echoArgs{}, nil)); code != rpc.CodeUnavailable {
		t.Errorf("Call(unserved) code = %v, want %v", code, rpc.CodeUnavailable)
	}
}

func TestUnavailable(t *testing.T) {
	tests := []struct {
		name string
		give error
		want bool
	}{
		{"no responders", fmt.Errorf("call: %w", nats.ErrNoResponders), true},
		{"timeout", nats.ErrTimeout, true},
		{"deadline", context.DeadlineExceeded, true},
		{"connection closed", nats.ErrConnectionClosed, true},
		{"no response from the stream", fmt.Errorf("append: %w", jetstream.ErrNoStreamResponse), true},
		{"JetStream temporarily unavailable", &jetstream.APIError{Code: 503, ErrorCode: 10008}, true},
		{"JetStream not enabled", jetstream.ErrJetStreamNotEnabled, true},
		{"stream between leaders", fmt.Errorf("append: %w", &jetstream.APIError{Code: 500, ErrorCode: 10009}), true},
		{"stream offline", &jetstream.APIError{Code: 500, ErrorCode: 10118}, true},
		{"wrong last sequence", &jetstream.APIError{Code: 400, ErrorCode: jetstream.JSErrCodeStreamWrongLastSequence}, false},
		{"stream not found", jetstream.ErrStreamNotFound, false},
		{"other", errors.New("disk on fire"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := rpc.Unavailable(tt.give); got != tt.want {
				t.Errorf("Unavailable(%v) = %v, want %v", tt.give, got, tt.want)
			}
			wantCode := rpc.CodeInternal
			if tt.want {
				wantCode = rpc.CodeUnavailable
			}
			if got := rpc.CodeOf(tt.give); got != wantCode {
				t.Errorf("CodeOf(%v) = %v, want %v", tt.give, got, wantCode)
			}
		})
	}
}

func TestPingAnswersHealth(t *testing.T) {
	s := natstest.Start(t, "")
	nc, _ := natstest.Connect(t, s)
	var health rpc.Health
	served, err := rpc.ServeAll(t.Context(), nc, slog.New(slog.DiscardHandler), "q", &health,
		rpc.Route{Subject: "test.health", Handler: rpc.Handle(func(_ context.Context, a echoArgs) (echoArgs, error) { return a, nil })})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(served.Stop)

	health.Set("consumer", errors.New("stream not found"))
	err = rpc.Ping(t.Context(), nc, "test.health")
	if rpc.CodeOf(err) != rpc.CodeUnavailable || !strings.Contains(err.Error(), "consumer: stream not found") {
		t.Errorf("Ping(failing part) = %v, want %s naming the part", err, rpc.CodeUnavailable)
	}
	health.Set("consumer", nil)
	if err := rpc.Ping(t.Context(), nc, "test.health"); err != nil {
		t.Errorf("Ping(well) = %v, want nil", err)
	}
}
