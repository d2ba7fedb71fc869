package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/analyticsapi"
	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/buspolicy"
	"github.com/parley-chat/parley/pkg/chatapi"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/personkey"
	"github.com/parley-chat/parley/pkg/privacyapi"
	"github.com/parley-chat/parley/pkg/stream"
	"github.com/parley-chat/parley/services/chat"
	"github.com/parley-chat/parley/services/gateway"
	"github.com/parley-chat/parley/services/privacy"
)

// The scenario of TestInstancesShareTheWork: clusterConversations
// conversations at once, each opened by its visitor and then posted to by
// the visitor and an agent together, clusterRounds times.
const (
	clusterConversations = 12
	clusterRounds        = 5
	clusterTenant        = "demo"
	// clusterWithin bounds each wait of the test, generous for a loaded
	// machine.
	clusterWithin = 60 * time.Second
)

// TestInstancesShareTheWork runs Parley on a three-node JetStream cluster
// with its streams replicated on every node, once with one chat and one
// privacy instance and once with two of each, every instance on a node of
// its own, and the same paced writers: in each conversation the visitor
// and an agent post at the same moment, each reading the transcript right
// after its 201. Through the one gateway every command and read goes to
// any chat instance. With two, one chat instance is stopped half way.
//
// Both runs must give what one instance on one server gives: every post
// answered 201, every read holding the reader's own post, every
// transcript what was posted in the order of its sequence numbers, and
// each conversation's facts in ANALYTICS exactly once (one
// first_response each).
func TestInstancesShareTheWork(t *testing.T) {
	want := clusterOutcome{
		Facts: map[string]map[int]int{
			analyticsapi.KindOpened:        {1: clusterConversations},
			analyticsapi.KindFirstResponse: {1: clusterConversations},
			analyticsapi.KindMessage:       {2*clusterRounds + 1: clusterConversations},
		},
	}
	tests := []struct {
		name             string
		chats, privacies int
		stopOne          bool
	}{
		{"one instance each", 1, 1, false},
		{"two instances each, one chat stopped half way", 2, 2, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := startClusterRig(t, tt.chats, tt.privacies).converse(t, tt.stopOne)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("outcome differs from every post stored, read back and derived once (-want +got):\n%s", diff)
			}
		})
	}
}

// clusterOutcome is what a run of the scenario gave.
type clusterOutcome struct {
	// Refused counts the posts not answered 201, by status.
	Refused map[int]int
	// ReadRefused counts the reads right after a 201 not answered 200, by
	// status.
	ReadRefused map[int]int
	// MissedReads counts the reads right after a 201 that lacked the
	// reader's post.
	MissedReads int
	// WrongTranscripts counts the conversations whose transcript, read at
	// the end, is not what was posted, in order.
	WrongTranscripts int
	// Facts is, for each kind of fact in ANALYTICS, how many
	// conversations have how many facts of it.
	Facts map[string]map[int]int
}

// clusterRig is Parley on a three-node cluster: one gateway, and chat and
// privacy instances, the instances of a service each on another node,
// each connected as its service's bus user with the other nodes to
// reconnect to.
type clusterRig struct {
	cluster *natstest.Cluster
	admin   jetstream.JetStream
	base    string
	signer  *auth.Signer
	chats   []*service
	logs    *syncBuffer
	client  *http.Client
}

// startClusterRig starts a cluster, applies the stream definitions with
// every stream on every node, starts the services and returns once every
// instance serves.
func startClusterRig(t *testing.T, chats, privacies int) *clusterRig {
	t.Helper()
	start := time.Now()
	passwords := map[string]string{}
	for _, u := range append(buspolicy.Services(), buspolicy.Admin) {
		passwords[u] = rand.Text()
	}
	users, err := buspolicy.Users(passwords)
	if err != nil {
		t.Fatal(err)
	}
	r := &clusterRig{
		cluster: natstest.StartCluster(t, users),
		logs:    &syncBuffer{},
		client:  &http.Client{Timeout: clusterWithin, Transport: &http.Transport{MaxIdleConnsPerHost: 4 * clusterConversations}},
	}
	t.Cleanup(r.client.CloseIdleConnections)
	log := slog.New(slog.NewJSONHandler(r.logs, nil))
	t.Cleanup(func() {
		if t.Failed() {
			r.logErrors(t)
		}
	})
	connect := func(user string, node int) *nats.Conn {
		opts := append(busOptions(user, log), nats.UserInfo(user, passwords[user]))
		return r.cluster.Connect(t, node%natstest.ClusterSize, opts...)
	}
	adminNC := r.cluster.Connect(t, 0, nats.UserInfo(buspolicy.Admin, passwords[buspolicy.Admin]))
	streams := stream.Options{Replicas: natstest.ClusterSize}
	if _, err := applyStreams(t.Context(), adminNC, streams); err != nil {
		t.Fatal(err)
	}
	if r.admin, err = jetstream.New(adminNC); err != nil {
		t.Fatal(err)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	r.base = "http://" + ln.Addr().String()

	rs := newRigServices(t, log, connect, streams, privacies, chats, []net.Listener{ln})
	r.signer = rs.signer
	svcs, ended := rs.start()
	r.chats = svcs[privacies : privacies+chats]
	t.Cleanup(func() {
		if err := stopInOrder(svcs[len(svcs)-1:], svcs[:len(svcs)-1]); err != nil {
			t.Errorf("stop the services: %v", err)
		}
	})
	natstest.Eventually(t, clusterWithin, "every instance serving", func() error {
		select {
		case name := <-ended:
			t.Fatalf("%s stopped before it served", name)
		default:
		}
		if err := r.serving(buspolicy.Chat, chatapi.PostSubject, chats); err != nil {
			return err
		}
		if err := r.serving(buspolicy.Privacy, privacyapi.RegisterVisitorSubject, privacies); err != nil {
			return err
		}
		status, err := r.do(http.MethodGet, "/readyz", "", nil, nil)
		if err == nil && status != http.StatusOK {
			err = fmt.Errorf("GET /readyz = %d", status)
		}
		return err
	})
	t.Logf("cluster and services ready in %v", time.Since(start).Round(time.Millisecond))
	return r
}

// rigServices are the instances of a rig, ready to start: privacy and
// chat instances and a gateway on each listener, with keys of their own.
// Instance i of a service is connected by connect to node i+2 (privacy),
// i+1 (chat) or i (gateway), so that the instances of a service are on
// different nodes. Every connection is made here, before any service
// starts, so that the services stop (cleanups run last first) before their
// connections close.
type rigServices struct {
	signer *auth.Signer
	names  []string
	runs   []func(context.Context) error
}

func newRigServices(t testing.TB, log *slog.Logger, connect func(user string, node int) *nats.Conn, streams stream.Options, privacies, chats int, listeners []net.Listener) *rigServices {
	t.Helper()
	keys := func(nc *nats.Conn) *personkey.Cache {
		c, err := personkey.NewCacheSize(nc, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	kek, err := privacy.ParseKEK(strings.Repeat("ab", 32))
	if err != nil {
		t.Fatal(err)
	}
	_, auditKey, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	_, signingKey, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	rs := &rigServices{signer: auth.NewSigner(signingKey)}
	for i := range privacies {
		nc, name := connect(buspolicy.Privacy, i+2), fmt.Sprintf("privacy-%d", i)
		rs.add(name, func(ctx context.Context) error {
			return privacy.Run(ctx, privacy.Deps{NC: nc, Log: log.With("service", name), KEK: kek, AuditKey: auditKey, Streams: streams})
		})
	}
	for i := range chats {
		nc, name := connect(buspolicy.Chat, i+1), fmt.Sprintf("chat-%d", i)
		k := keys(nc)
		rs.add(name, func(ctx context.Context) error {
			return chat.Run(ctx, chat.Deps{NC: nc, Log: log.With("service", name), Keys: k, Streams: streams})
		})
	}
	for i, ln := range listeners {
		nc, name := connect(buspolicy.Gateway, i), fmt.Sprintf("gateway-%d", i)
		k := keys(nc)
		rs.add(name, func(ctx context.Context) error {
			return gateway.Run(ctx, gateway.Deps{
				NC: nc, Log: log.With("service", name), Listener: ln,
				Signer: rs.signer, Verifier: auth.NewVerifier(signingKey.Public().(ed25519.PublicKey)),
				Keys: k, DefaultTenant: clusterTenant, RateLimit: -1, Streams: streams,
			})
		})
	}
	return rs
}

// add adds an instance, started after those added before it.
func (rs *rigServices) add(name string, run func(context.Context) error) {
	rs.names, rs.runs = append(rs.names, name), append(rs.runs, run)
}

// start starts every instance, in the order privacy, chat, gateway;
// ended hears the name of each that returns.
func (rs *rigServices) start() (svcs []*service, ended <-chan string) {
	c := make(chan string, len(rs.runs))
	for i, run := range rs.runs {
		svcs = append(svcs, startService(rs.names[i], run, c))
	}
	return svcs, c
}

// subscribers returns, for each connection of the bus user across the
// nodes that subscribes to subject, the messages delivered on it. A
// subscription to a subject under subject counts as one to subject, so
// that serving a call in partitions (parley.chat.post.<partition>) counts.
func (r *clusterRig) subscribers(user, subject string) ([]int64, error) {
	var msgs []int64
	for _, s := range r.cluster.Nodes {
		cz, err := s.Connz(&server.ConnzOptions{User: user, SubscriptionsDetail: true})
		if err != nil {
			return nil, fmt.Errorf("connections of %s on %s: %w", user, s.Name(), err)
		}
		for _, c := range cz.Conns {
			var n int64
			serves := false
			for _, sub := range c.SubsDetail {
				if sub.Subject == subject || strings.HasPrefix(sub.Subject, subject+".") {
					n += sub.Msgs
					serves = true
				}
			}
			if serves {
				msgs = append(msgs, n)
			}
		}
	}
	return msgs, nil
}

// serving returns nil once want connections of the bus user serve subject.
func (r *clusterRig) serving(user, subject string, want int) error {
	msgs, err := r.subscribers(user, subject)
	if err == nil && len(msgs) != want {
		err = fmt.Errorf("%d instances of %s serve %s, want %d", len(msgs), user, subject, want)
	}
	return err
}

// posted is one message posted with a 201.
type posted struct {
	ID   string
	Seq  uint64
	Role auth.Role
	Text string
}

// conversationRun is what the writers of one conversation posted.
type conversationRun struct {
	id      string
	opening string
	mu      sync.Mutex
	posts   []posted
}

// tally counts what went wrong across the writers.
type tally struct {
	mu sync.Mutex
	// refused and readRefused count, by status, the posts not answered
	// 201 and the reads after a 201 not answered 200.
	refused, readRefused map[int]int
	missedReads          int
	errs                 []error
}

func (tl *tally) miss() {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	tl.missedReads++
}

// count adds one at key to what, under the tally's lock.
func (tl *tally) count(what *map[int]int, key int) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if *what == nil {
		*what = map[int]int{}
	}
	(*what)[key]++
}

func (tl *tally) fail(err error) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	tl.errs = append(tl.errs, err)
}

// converse runs the scenario and returns its outcome; with stopOne, the
// second chat instance stops once half of the posts are answered, while
// the writers go on.
func (r *clusterRig) converse(t *testing.T, stopOne bool) clusterOutcome {
	t.Helper()
	start := time.Now()
	runs := make([]*conversationRun, clusterConversations)
	visitors := make([]string, clusterConversations)
	agents := make([]string, clusterConversations)
	for i := range runs {
		runs[i] = &conversationRun{opening: fmt.Sprintf("conversation %d opening", i)}
		_, visitors[i] = newVisitor(t, r.base, clusterTenant)
		var err error
		agents[i], err = r.signer.Issue(auth.Principal{Tenant: clusterTenant, ID: fmt.Sprintf("agent-%d", i), Role: auth.RoleAgent}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
	}
	tl := &tally{}
	var answered atomic.Int64
	half := make(chan struct{})
	var halfOnce sync.Once
	total := int64(clusterConversations * 2 * clusterRounds)
	onAnswer := func() {
		if answered.Add(1) >= total/2 {
			halfOnce.Do(func() { close(half) })
		}
	}
	stopped := make(chan error, 1)
	var servedBeforeStop []int64
	if stopOne {
		go func() {
			<-half
			var err error
			if servedBeforeStop, err = r.subscribers(buspolicy.Chat, chatapi.PostSubject); err != nil {
				stopped <- err
				return
			}
			svc := r.chats[1]
			svc.cancel()
			<-svc.done
			stopped <- svc.err
		}()
	}

	var wg sync.WaitGroup
	for i, run := range runs {
		wg.Go(func() {
			var opened struct{ ID string }
			status, err := r.do(http.MethodPost, "/v1/conversations", visitors[i], map[string]string{"text": run.opening}, &opened)
			switch {
			case err != nil:
				tl.fail(err)
				return
			case status != http.StatusCreated:
				tl.count(&tl.refused, status)
				return
			}
			run.id = opened.ID
			r.readBack(tl, run.id, visitors[i], func(m []chatapi.Message) bool {
				return len(m) > 0 && m[0].Text != nil && *m[0].Text == run.opening
			})
			for round := range clusterRounds {
				var both sync.WaitGroup
				for _, w := range []struct {
					role  auth.Role
					token string
				}{{auth.RoleVisitor, visitors[i]}, {auth.RoleAgent, agents[i]}} {
					both.Go(func() {
						defer onAnswer()
						r.post(tl, run, w.token, posted{Role: w.role, Text: fmt.Sprintf("conversation %d round %d %s", i, round, w.role)})
					})
				}
				both.Wait()
			}
		})
	}
	wg.Wait()
	if stopOne {
		select {
		case err := <-stopped:
			if err != nil {
				t.Errorf("stop chat-1: %v", err)
			}
		case <-time.After(clusterWithin):
			t.Fatalf("chat-1 still running %v after it was stopped", clusterWithin)
		}
		for i, n := range servedBeforeStop {
			if n == 0 {
				t.Errorf("chat instance %d of %d took no post before one stopped: the work is not shared", i, len(servedBeforeStop))
			}
		}
	}
	for _, err := range tl.errs {
		t.Errorf("writer: %v", err)
	}
	out := clusterOutcome{Refused: tl.refused, ReadRefused: tl.readRefused, MissedReads: tl.missedReads}
	for i, run := range runs {
		if run.id == "" {
			continue
		}
		if err := r.checkTranscript(run, visitors[i]); err != nil {
			t.Logf("conversation %s: %v", run.id, err)
			out.WrongTranscripts++
		}
	}
	writing := time.Since(start)
	out.Facts = r.facts(t)
	t.Logf("%d posts and as many reads in %v; facts derived %v later; outcome %+v",
		answered.Load(), writing.Round(time.Millisecond), (time.Since(start) - writing).Round(time.Millisecond), out)
	return out
}

// post posts p's text as token, p's role, to run's conversation and reads
// the transcript right after a 201, which must hold the post.
func (r *clusterRig) post(tl *tally, run *conversationRun, token string, p posted) {
	var res chatapi.PostResult
	status, err := r.do(http.MethodPost, "/v1/conversations/"+run.id+"/messages", token, map[string]string{"text": p.Text}, &res)
	switch {
	case err != nil:
		tl.fail(err)
		return
	case status != http.StatusCreated:
		tl.count(&tl.refused, status)
		return
	}
	run.mu.Lock()
	p.ID, p.Seq = res.ID, res.Seq
	run.posts = append(run.posts, p)
	run.mu.Unlock()
	r.readBack(tl, run.id, token, func(ms []chatapi.Message) bool {
		return slices.ContainsFunc(ms, func(m chatapi.Message) bool { return m.ID == res.ID })
	})
}

// readBack reads a conversation's transcript as token right after a 201,
// and tallies it as missed unless it is answered and has holds for it.
func (r *clusterRig) readBack(tl *tally, conv, token string, has func([]chatapi.Message) bool) {
	ms, status, err := r.transcript(conv, token)
	switch {
	case err != nil:
		tl.fail(err)
	case status != http.StatusOK:
		tl.count(&tl.readRefused, status)
	case !has(ms):
		tl.miss()
	}
}

// transcript reads a conversation's first page of messages, which holds
// them all in this test, and answers its status.
func (r *clusterRig) transcript(conv, token string) ([]chatapi.Message, int, error) {
	var page struct {
		Messages   []chatapi.Message `json:"messages"`
		NextCursor *string           `json:"next_cursor"`
	}
	path := "/v1/conversations/" + conv + "/messages"
	status, err := r.do(http.MethodGet, path, token, nil, &page)
	if err == nil && page.NextCursor != nil {
		err = fmt.Errorf("GET %s: a transcript of this test has more than a page", path)
	}
	return page.Messages, status, err
}

// checkTranscript compares a conversation's transcript with what was
// posted to it, in the order of the posts' sequence numbers.
func (r *clusterRig) checkTranscript(run *conversationRun, token string) error {
	ms, status, err := r.transcript(run.id, token)
	switch {
	case err != nil:
		return err
	case status != http.StatusOK:
		return fmt.Errorf("read the transcript: status %d", status)
	}
	// The opening's id is not answered to its poster.
	want := []string{"visitor " + run.opening}
	slices.SortFunc(run.posts, func(a, b posted) int { return int(a.Seq) - int(b.Seq) })
	for _, p := range run.posts {
		want = append(want, fmt.Sprintf("%s %s %s", p.ID, p.Role, p.Text))
	}
	got := make([]string, len(ms))
	for i, m := range ms {
		role, text := "<no author>", "<no text>"
		if m.Author != nil {
			role = m.Author.Role
		}
		if m.Text != nil {
			text = *m.Text
		}
		got[i] = fmt.Sprintf("%s %s %s", m.ID, role, text)
		if i == 0 {
			got[i] = role + " " + text
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		return fmt.Errorf("transcript differs from what was posted (-posted +read):\n%s", diff)
	}
	return nil
}

// facts waits until every durable consumer of CHAT (the relay's) has
// handled every event, then counts the facts in ANALYTICS.
func (r *clusterRig) facts(t *testing.T) map[string]map[int]int {
	t.Helper()
	waitConsumed(t, r.admin, stream.Chat, clusterWithin)
	perConversation := map[string]map[string]int{}
	for _, f := range streamFacts(t, r.admin) {
		if perConversation[f.Kind] == nil {
			perConversation[f.Kind] = map[string]int{}
		}
		perConversation[f.Kind][f.Conversation]++
	}
	out := map[string]map[int]int{}
	for kind, convs := range perConversation {
		out[kind] = map[int]int{}
		for _, n := range convs {
			out[kind][n]++
		}
	}
	return out
}

// streamFacts reads every fact in ANALYTICS, in stream order, each once.
func streamFacts(t *testing.T, admin jetstream.JetStream) []analyticsapi.Fact {
	t.Helper()
	var facts []analyticsapi.Fact
	for _, r := range readAnalytics(t, admin) {
		if r.kind != analyticsapi.KindErasure {
			facts = append(facts, r.fact)
		}
	}
	return facts
}

// waitConsumed waits until every durable consumer of the stream name has
// handled every message: none pending, none delivered and unacknowledged.
func waitConsumed(t *testing.T, admin jetstream.JetStream, name string, within time.Duration) {
	t.Helper()
	ctx := t.Context()
	natstest.Eventually(t, within, name+"'s durable consumers caught up", func() error {
		s, err := admin.Stream(ctx, name)
		if err != nil {
			return err
		}
		consumers := s.ListConsumers(ctx)
		for c := range consumers.Info() {
			if c.Config.Durable != "" && (c.NumPending > 0 || c.NumAckPending > 0) {
				return fmt.Errorf("consumer %s: %d pending, %d unacknowledged (delivered %d/%d, ack floor %d/%d, stream/consumer; %d pull requests waiting)",
					c.Name, c.NumPending, c.NumAckPending, c.Delivered.Stream, c.Delivered.Consumer, c.AckFloor.Stream, c.AckFloor.Consumer, c.NumWaiting)
			}
		}
		return consumers.Err()
	})
}

// do sends a JSON request as token and decodes a 2xx answer into out; it
// fails only when there is no answer, for the writers' goroutines, which
// may not end the test.
func (r *clusterRig) do(method, path, token string, body, out any) (int, error) {
	return r.doWith(method, path, token, nil, body, out)
}

// doWith is do with more request headers.
func (r *clusterRig) doWith(method, path, token string, header http.Header, body, out any) (int, error) {
	var in io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		in = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, r.base+path, in)
	if err != nil {
		return 0, err
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 == 2 && out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return 0, fmt.Errorf("%s %s: %w", method, path, err)
		}
	}
	return resp.StatusCode, nil
}

// logErrors shows the services' warnings and errors of a failed run, and
// any line not logged as JSON: what a service's process wrote as it
// ended (TestFaults' chat processes).
func (r *clusterRig) logErrors(t testing.TB) {
	for line := range strings.Lines(r.logs.String()) {
		var rec struct{ Level string }
		if json.Unmarshal([]byte(line), &rec) != nil || rec.Level != slog.LevelInfo.String() && rec.Level != slog.LevelDebug.String() {
			t.Log(strings.TrimSpace(line))
		}
	}
}
