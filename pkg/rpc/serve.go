package rpc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
)

// DefaultVersion is the version of a Service that names none.
const DefaultVersion = "1.0.0"

// Service is one Parley service on the bus: a nats.go micro service, which
// answers $SRV.PING, $SRV.INFO and $SRV.STATS (with .<name> and
// .<name>.<id>) so that `nats micro ls|info|stats` show it.
type Service struct {
	// Name names the service for discovery: letters, digits, - and _.
	Name string
	// Version is a semantic version; DefaultVersion when empty.
	Version     string
	Description string
	// Queue is the queue group the service's instances share requests in.
	Queue string
	// Health is what pings answer (see Ping); nil is always well.
	Health *Health
	Groups []Group
}

// Group is endpoints under one subject prefix, a micro group.
type Group struct {
	// Prefix starts every subject of the group's routes, followed by a
	// dot; the rest of a subject, dots made dashes, names its endpoint.
	// Empty: the whole subject names it.
	Prefix string
	// Internal endpoints are for services only: they accept the system
	// principal and nothing else (see Handle). Only the bus permissions
	// make that safe: an internal group's subjects must be outside what
	// the gateway may publish.
	Internal bool
	Routes   []Route
}

// Route is one subject and the handler that serves it.
type Route struct {
	Subject string
	Handler Handler
}

// Served is a service being served; Stop ends it.
type Served struct {
	nc  *nats.Conn
	svc micro.Service
	log *slog.Logger

	// mu orders a handler's start against Stop's end: once stopped, a
	// request micro still hands over is answered unavailable at once, so
	// that no handler starts after Stop returned.
	mu       sync.RWMutex
	stopped  bool
	inFlight sync.WaitGroup
	// pending counts requests received and not yet answered.
	pending atomic.Int64
	stats   map[string]*endpointStats
}

// Serve puts svc on nc: each route an endpoint of its group, served in
// queue group svc.Queue, so instances of a service share the load. Each
// request runs in its own goroutine with a context cancelled when ctx is
// and at the request's deadline (DeadlineHeader); a request that arrives
// after its deadline is answered CodeUnavailable, its handler not called.
// Internal errors are logged here, once. A ping (see Ping) is answered
// with svc.Health's error without calling a handler. Serve flushes, so
// that the server has every subscription before the caller says it is
// serving.
func Serve(ctx context.Context, nc *nats.Conn, log *slog.Logger, svc Service) (*Served, error) {
	s := &Served{nc: nc, log: log, stats: make(map[string]*endpointStats)}
	type endpoint struct {
		group, name, subject string
		h                    micro.Handler
	}
	var endpoints []endpoint
	for _, g := range svc.Groups {
		for _, r := range g.Routes {
			rest := r.Subject
			if g.Prefix != "" {
				var ok bool
				if rest, ok = strings.CutPrefix(r.Subject, g.Prefix+"."); !ok {
					return nil, fmt.Errorf("serve %s: subject %s is not in group %s", svc.Name, r.Subject, g.Prefix)
				}
			}
			name := strings.ReplaceAll(rest, ".", "-")
			if s.stats[name] != nil {
				return nil, fmt.Errorf("serve %s: two endpoints named %s", svc.Name, name)
			}
			st := new(endpointStats)
			s.stats[name] = st
			endpoints = append(endpoints, endpoint{g.Prefix, name, rest, s.handler(ctx, svc.Health, g.Internal, r, st)})
		}
	}
	version := svc.Version
	if version == "" {
		version = DefaultVersion
	}
	var err error
	s.svc, err = micro.AddService(nc, micro.Config{
		Name:         svc.Name,
		Version:      version,
		Description:  svc.Description,
		QueueGroup:   svc.Queue,
		StatsHandler: func(e *micro.Endpoint) any { return s.stats[e.Name].snapshot() },
	})
	if err != nil {
		return nil, fmt.Errorf("serve %s: %w", svc.Name, err)
	}
	groups := make(map[string]micro.Group)
	for _, e := range endpoints {
		add := s.svc.AddEndpoint
		if e.group != "" {
			if groups[e.group] == nil {
				groups[e.group] = s.svc.AddGroup(e.group)
			}
			add = groups[e.group].AddEndpoint
		}
		if err := add(e.name, e.h, micro.WithEndpointSubject(e.subject)); err != nil {
			s.Stop()
			return nil, fmt.Errorf("serve %s: endpoint %s: %w", svc.Name, e.name, err)
		}
	}
	if err := nc.Flush(); err != nil {
		s.Stop()
		return nil, fmt.Errorf("serve %s: flush subscriptions: %w", svc.Name, err)
	}
	return s, nil
}

// handler is r's micro handler. micro counts a request's time and errors
// only while its handler runs, and runs an endpoint's handlers one after
// another: a request is answered from a goroutine of its own instead, so
// one slow request holds up no other, and endpointStats counts what micro
// cannot see (the stats' "data").
func (s *Served) handler(ctx context.Context, health *Health, internal bool, r Route, st *endpointStats) micro.Handler {
	if internal {
		ctx = context.WithValue(ctx, internalKey{}, true)
	}
	return micro.HandlerFunc(func(req micro.Request) {
		s.mu.RLock()
		defer s.mu.RUnlock()
		st.start()
		if s.stopped {
			s.respond(r.Subject, req, nil, Errorf(CodeUnavailable, "service stopping"), st, time.Now())
			return
		}
		s.pending.Add(1)
		s.inFlight.Go(func() {
			defer s.pending.Add(-1)
			begin := time.Now()
			var (
				res any
				err error
			)
			deadline, err := deadlineOf(req.Headers(), begin)
			switch {
			case err != nil:
			case !begin.Before(deadline):
				err = errLate
			case req.Headers().Get(pingHeader) != "":
				err = health.Err()
			default:
				hctx, cancel := context.WithDeadline(ctx, deadline)
				res, err = r.Handler(hctx, req.Data())
				cancel()
			}
			s.respond(r.Subject, req, res, err, st, begin)
		})
	})
}

// errLate answers a request that arrived after its deadline: its caller
// has given up, or is about to, and takes it as not done.
var errLate = Errorf(CodeUnavailable, "the request arrived after its deadline")

// deadlineOf returns the deadline of a request received at now: its
// DeadlineHeader, else DefaultTimeout from now.
func deadlineOf(h micro.Headers, now time.Time) (time.Time, error) {
	v := h.Get(DeadlineHeader)
	if v == "" {
		return now.Add(DefaultTimeout), nil
	}
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return time.Time{}, Errorf(CodeInvalid, "malformed %s header", DeadlineHeader)
	}
	return time.UnixMilli(ms), nil
}

// respond answers req with res, or with err in micro's error headers and
// as JSON in the body (for RetryAfter). A json.RawMessage result is sent as
// it is: its handler encoded it, and encoding/json would scan it again.
func (s *Served) respond(subject string, req micro.Request, res any, err error, st *endpointStats, begin time.Time) {
	m := &nats.Msg{Subject: req.Reply()}
	if raw, ok := res.(json.RawMessage); ok && err == nil {
		m.Data = raw
	} else if err == nil {
		if m.Data, err = json.Marshal(res); err != nil {
			err = fmt.Errorf("encode reply: %w", err)
		}
	}
	var e *Error
	if err != nil {
		if !errors.As(err, &e) {
			s.log.Error("request failed", "subject", subject, "err", err)
			e = &Error{Code: CodeInternal, Message: "internal error"}
		}
		m.Header = nats.Header{micro.ErrorCodeHeader: {string(e.Code)}, micro.ErrorHeader: {e.Message}}
		m.Data, _ = json.Marshal(e) // strings and an int always encode
	}
	st.done(time.Since(begin), e)
	if m.Subject == "" {
		return // published, not requested: nobody waits for an answer
	}
	if err := s.nc.PublishMsg(m); err != nil {
		s.log.Warn("respond", "subject", subject, "err", err)
	}
}

// drainTimeout bounds Stop's wait for the requests received to be
// answered.
const drainTimeout = 10 * time.Second

// settle is how long Stop sees no request pending before it takes the
// drain as done; a request handed over later still gets an answer, see
// Served.mu.
const settle = 50 * time.Millisecond

// Stop ends the service and returns once every request it received has
// been answered: micro drains each endpoint's subscription, so no new
// request reaches it (another instance in the queue group gets it) while
// every request already sent to it is handed to its handler, and then Stop
// waits for the handlers. Requests are answered with the context given to
// Serve, so a caller that wants them to finish passes one that outlives
// the shutdown. A closed connection ends the subscriptions too, so errors
// are not reported.
func (s *Served) Stop() {
	_ = s.svc.Stop()
	// Once the flush is answered the server sends no more requests, and
	// every one it sent is queued on its subscription; micro does not let
	// its drained subscriptions be watched, so what is queued is taken as
	// handed over once nothing was pending for a while; anything later is
	// answered unavailable, which callers retry on another instance.
	_ = s.nc.Flush()
	deadline := time.Now().Add(drainTimeout)
	quiet := time.Now()
	for time.Since(quiet) < settle && time.Now().Before(deadline) {
		if s.pending.Load() > 0 {
			quiet = time.Now()
		}
		time.Sleep(5 * time.Millisecond)
	}
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	s.inFlight.Wait()
}

// endpointStats is what micro cannot count of an endpoint, its requests
// being answered on goroutines of their own.
type endpointStats struct {
	mu             sync.Mutex
	inFlight       int
	answered       int
	errors         map[Code]int
	processingTime time.Duration
}

func (st *endpointStats) start() {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.inFlight++
}

func (st *endpointStats) done(d time.Duration, e *Error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.inFlight--
	st.answered++
	st.processingTime += d
	if e != nil {
		if st.errors == nil {
			st.errors = make(map[Code]int)
		}
		st.errors[e.Code]++
	}
}

// EndpointData is an endpoint's "data" in micro's stats: its requests
// answered, those in flight, its errors by Code, and the time spent
// answering them.
type EndpointData struct {
	InFlight              int           `json:"in_flight"`
	Answered              int           `json:"answered"`
	Errors                map[Code]int  `json:"errors,omitempty"`
	ProcessingTime        time.Duration `json:"processing_time"`
	AverageProcessingTime time.Duration `json:"average_processing_time"`
}

func (st *endpointStats) snapshot() EndpointData {
	if st == nil {
		return EndpointData{}
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	d := EndpointData{InFlight: st.inFlight, Answered: st.answered, ProcessingTime: st.processingTime}
	d.Errors = maps.Clone(st.errors)
	if st.answered > 0 {
		d.AverageProcessingTime = st.processingTime / time.Duration(st.answered)
	}
	return d
}
