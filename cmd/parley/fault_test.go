package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/analyticsapi"
	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/buspolicy"
	"github.com/parley-chat/parley/pkg/chatapi"
	"github.com/parley-chat/parley/pkg/chserver"
	"github.com/parley-chat/parley/pkg/chserver/chtest"
	"github.com/parley-chat/parley/pkg/natsembed"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/personkey"
	"github.com/parley-chat/parley/pkg/privacyapi"
	"github.com/parley-chat/parley/pkg/stream"
	"github.com/parley-chat/parley/services/analytics"
	"github.com/parley-chat/parley/services/chat"
)

// The load of TestFaults: faultConversations writers, each posting to its
// own conversation, its visitor and an agent in turn, through the two
// gateways in turn, pausing faultPace between posts. Each post carries an
// Idempotency-Key; the writers of odd conversations repeat a post not
// answered 201 (503 or no answer) with its key until it is, as clients
// should (docs/api.md, "Idempotency"), the others never do, so that
// whether a post answered 503 was stored later stays to be seen.
const (
	faultConversations = 8
	faultPace          = 250 * time.Millisecond
	// faultResumeRun is how many posts in a row each gateway must answer
	// 201, all sent after a fault, for posting to count as resumed.
	faultResumeRun = 10
	// faultWithin bounds every wait of the test, posting resuming after
	// a fault included: generous for a loaded machine. How fast posting
	// resumes is a figure the test prints, not something it asserts.
	faultWithin = 60 * time.Second
	// faultGoal is how soon posting should resume after a fault (issue
	// goal, BENCHMARKS.md "Failover"): the report says whether it was met,
	// nothing asserts it.
	faultGoal = 10 * time.Second
	// faultInFlight is how many posts must be in flight, sent and not
	// answered, when a chat instance is killed: each one more halves the
	// odds that the instance holds none.
	faultInFlight = 2
	// faultReportEnv names a file TestFaults writes its figures to, for
	// CI, which runs tests without -v, to print (.ci/run).
	faultReportEnv = "PARLEY_FAULT_REPORT"
)

// TestFaults runs Parley as a production cluster does, on loopback: three
// NATS servers, each a process of its own (the test binary as
// TestNATSNodeProcess) so that one can be killed or frozen, every stream
// on all three with every write synced before it is acknowledged; two
// gateways, two chat, two privacy and two analytics instances, each
// connected with the services' own connection options (busOptions) to a
// server of its own first, the chat instances each a process of its own
// too (the test binary as TestChatProcess), the analytics instances on
// ANALYTICS's one durable consumer and one ClickHouse server (chtest:
// skipped without one, except in CI). Writers post through both gateways
// and record every answer while the test kills the server leading CHAT
// (and restarts it), freezes the server then leading CHAT (SIGSTOP, then
// SIGCONT), and kills chat-1 with SIGKILL, with requests in flight:
// nothing of it runs on, no deferred call, no goroutine, no drain.
//
// After each of these, and after the restart and the thaw, posting must
// resume within faultWithin; the time it took is printed, and written to
// the file PARLEY_FAULT_REPORT names (BENCHMARKS.md, "Failover").
// Afterwards every post answered 201 must be in its conversation's
// transcript exactly once, in the order it was answered; no post answered
// 503 may have been proposed for storing after its answer (one proposed
// before it may be committed after it: counted); and each conversation's
// messages must be counted exactly once, by the facts in ANALYTICS and,
// once analytics has consumed them all, by the facts in ClickHouse as the
// metrics count them (FINAL), per conversation, and by the metrics
// conversations and messages an analyst reads through a gateway.
func TestFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("a fault run takes minutes")
	}
	loadBefore := loadAverage()
	r := startFaultRig(t, faultConversations)
	r.watchLive(t)
	r.startLoad(t)
	r.waitResumed(t, "warm-up", r.started)

	killed := r.nodes[r.streamLeader(t, stream.Chat)]
	r.fault(t, fmt.Sprintf("NATS %s (leading CHAT) killed", killed.cfg.Name), func() { killed.kill(t) })
	r.fault(t, fmt.Sprintf("NATS %s restarted", killed.cfg.Name), func() { killed.start(t) })
	r.waitCurrent(t)

	frozen := r.nodes[r.streamLeader(t, stream.Chat)]
	r.fault(t, fmt.Sprintf("NATS %s (leading CHAT) frozen", frozen.cfg.Name), func() { frozen.signal(t, syscall.SIGSTOP) })
	r.fault(t, fmt.Sprintf("NATS %s thawed", frozen.cfg.Name), func() { frozen.signal(t, syscall.SIGCONT) })
	r.waitCurrent(t)

	// Killed with posts in flight, so that it likely holds some.
	inFlight := r.waitInFlight(t, faultInFlight)
	r.fault(t, fmt.Sprintf("chat-1 killed (%d posts in flight)", inFlight), r.chats[1].kill)
	r.stopLoad()

	out := r.check(t)
	var report strings.Builder
	for _, f := range r.faults {
		fig := r.resume(f)
		goal := "met"
		if fig.resumeAfter > faultGoal {
			goal = "missed"
		}
		fmt.Fprintf(&report, "%s: %s; goal %v: %s; load average %s\n", f.name, fig, faultGoal, goal, f.load)
	}
	fmt.Fprintf(&report, "%d answers 201 (%d seen live), refused %v; %d answers followed by a retry with the post's Idempotency-Key, %d posts so retried answered 201 in the end; "+
		"answered 503 and not retried: %d visible before their answer, %d proposed before it and committed after it, %d stored and not seen live; "+
		"refused otherwise (0: no answer) %v; load average before %s, after %s\n",
		out.acknowledged, out.seenLive, out.refused, out.retried, out.retriedStored, out.storedBefore503, out.committedAfter503, out.unseen503, out.unanswered, loadBefore, loadAverage())
	// The batch reader's warning (pkg/watermilljs): a delivery lost on its
	// way, delivered again rather than acknowledged unread.
	gaps := strings.Count(r.logs.String(), "a delivery never arrived")
	fmt.Fprintf(&report, "facts in ClickHouse: %d, in %s rows; metrics over the run: %s; analytics instances ready (reading ANALYTICS): %d of %d; sessions of ANALYTICS's reader ended at a delivery that never arrived: %d\n",
		out.facts, out.factRows, strings.Join(out.metrics, ", "), out.analyticsReady, len(r.analytics), gaps)
	if len(out.repeatRefused) > 0 {
		fmt.Fprintf(&report, "repeats with the post's Idempotency-Key refused otherwise than 503 (docs/api.md promises the first answer): %s\n", strings.Join(out.repeatRefused, "; "))
	}
	t.Log("\n" + report.String())
	if path := os.Getenv(faultReportEnv); path != "" {
		if err := os.WriteFile(path, []byte(report.String()), 0o644); err != nil {
			t.Errorf("write the report: %v", err)
		}
	}
}

// natsNodeEnv makes the test binary a NATS server, TestNATSNodeProcess,
// instead of running tests: its value is the server's natsNodeConfig, as
// JSON.
const natsNodeEnv = "PARLEY_TEST_NATS_NODE"

// natsNodeConfig is a NATS server of TestFaults' cluster.
type natsNodeConfig struct {
	Name        string
	Port        int
	ClusterPort int
	// Routes are every node's route URL, this one's included.
	Routes   []string
	StoreDir string
	// Passwords are the bus users' (buspolicy.Users).
	Passwords map[string]string
}

// TestNATSNodeProcess is a NATS server of TestFaults' cluster when the
// test binary is started by natsNode.start: JetStream syncing every write
// before it is acknowledged, the services' users, routes to the other
// nodes. It runs until SIGTERM, or SIGKILL.
func TestNATSNodeProcess(t *testing.T) {
	childMain(t, natsNodeEnv, "natsNode.start", runNATSNode)
}

// childMain runs run on the config in the environment variable env and
// exits with its status, when the test binary was started as a process of
// a test by starter; otherwise it skips.
func childMain(t *testing.T, env, starter string, run func(raw string) error) {
	raw, ok := os.LookupEnv(env)
	if !ok {
		t.Skip("runs only as a process started by " + starter)
	}
	os.Exit(exitStatus(run(raw), os.Stderr))
}

func runNATSNode(raw string) error {
	var cfg natsNodeConfig
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		return err
	}
	users, err := buspolicy.Users(cfg.Passwords)
	if err != nil {
		return err
	}
	routes := make([]*url.URL, len(cfg.Routes))
	for i, r := range cfg.Routes {
		if routes[i], err = url.Parse(r); err != nil {
			return err
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	s, err := natsembed.Start(natsembed.Options{
		Port: cfg.Port, StoreDir: cfg.StoreDir, SyncAlways: true, Users: users, Name: cfg.Name,
		Cluster: &natsembed.Cluster{Port: cfg.ClusterPort, Routes: routes},
	})
	if err != nil {
		return err
	}
	defer s.Close()
	fmt.Println(natsNodeReady)
	<-ctx.Done()
	return nil
}

// natsNodeReady is the line a node prints once it takes connections.
const natsNodeReady = "nats node ready"

// natsNode is a NATS server of TestFaults' cluster, in a process of its own.
type natsNode struct {
	cfg    natsNodeConfig
	cmd    *exec.Cmd // nil while not running
	stderr syncBuffer
}

func (n *natsNode) url() string {
	return "nats://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(n.cfg.Port))
}

// start runs the node, on its store of any earlier run, and returns once
// it takes connections. It is killed when the test ends.
func (n *natsNode) start(t testing.TB) {
	t.Helper()
	cfg, err := json.Marshal(n.cfg)
	if err != nil {
		t.Fatal(err)
	}
	cmd := testProcess("TestNATSNodeProcess", natsNodeEnv, cfg)
	cmd.Stderr = &n.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	n.cmd = cmd
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if sc.Text() == natsNodeReady {
				close(ready)
				break
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case <-ready:
	case <-time.After(faultWithin):
		t.Fatalf("NATS %s did not start within %v:\n%s", n.cfg.Name, faultWithin, n.stderr.String())
	}
}

// signal sends sig to the node's process.
func (n *natsNode) signal(t *testing.T, sig os.Signal) {
	t.Helper()
	if err := n.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal NATS %s: %v", n.cfg.Name, err)
	}
}

// kill ends the node with SIGKILL, frozen or not, and waits for it.
func (n *natsNode) kill(t testing.TB) {
	t.Helper()
	if n.cmd == nil {
		return
	}
	if err := n.cmd.Process.Kill(); err != nil {
		t.Errorf("kill NATS %s: %v", n.cfg.Name, err)
	}
	_ = n.cmd.Wait() // killed: its status says so
	n.cmd = nil
}

// testProcess is the test binary run again as the one test named, which
// is a process of TestFaults' cluster, its config in the environment
// variable env (passwords go by the environment, never by arguments). The
// process is killed when the test binary ends, however it ends.
func testProcess(test, env string, cfg []byte) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$")
	cmd.Env = append(os.Environ(), env+"="+string(cfg))
	cmd.SysProcAttr = testProcAttr()
	return cmd
}

// chatProcessEnv makes the test binary a chat instance, TestChatProcess,
// instead of running tests: its value is the instance's
// chatProcessConfig, as JSON.
const chatProcessEnv = "PARLEY_TEST_CHAT"

// chatProcessConfig is a chat instance of TestFaults.
type chatProcessConfig struct {
	Name string
	// URLs are the NATS servers', comma separated, the one to connect to
	// first first.
	URLs     string
	Password string // bus user buspolicy.Chat's
}

// TestChatProcess is a chat instance of TestFaults when the test binary
// is started by startChatProcess: chat.Run on a connection with the
// services' options, logging JSON to stderr. SIGTERM stops it as it stops
// `parley chat`; SIGKILL ends it at once.
func TestChatProcess(t *testing.T) {
	childMain(t, chatProcessEnv, "startChatProcess", runChatProcess)
}

func runChatProcess(raw string) error {
	var cfg chatProcessConfig
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil)).With("service", cfg.Name)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	nc, err := nats.Connect(cfg.URLs, faultBusOptions(buspolicy.Chat, cfg.Password, log)...)
	if err != nil {
		return fmt.Errorf("connect to nats: %w", err)
	}
	defer nc.Close()
	keys, err := personkey.NewCacheSize(nc, 0)
	if err != nil {
		return err
	}
	defer keys.Close()
	return chat.Run(ctx, chat.Deps{NC: nc, Log: log, Keys: keys, Streams: faultStreams})
}

// faultStreams are the stream options of TestFaults: every stream on
// every server.
var faultStreams = stream.Options{Replicas: natstest.ClusterSize}

// faultBusOptions are the options of a connection of TestFaults: the
// services' own, as user, to the servers in the order given.
func faultBusOptions(user, password string, log *slog.Logger) []nats.Option {
	return append(busOptions(user, log), nats.DontRandomize(), nats.UserInfo(user, password))
}

// chatProcess is a chat instance of TestFaults in a process of its own.
type chatProcess struct {
	name   string
	cmd    *exec.Cmd
	killed bool
	exited chan struct{} // closed once the process ended
	err    error         // how it ended, once exited
}

// startChatProcess starts a chat instance writing its log to logs. It is
// killed when the test ends.
func startChatProcess(t testing.TB, cfg chatProcessConfig, logs io.Writer) *chatProcess {
	t.Helper()
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := &chatProcess{name: cfg.Name, cmd: testProcess("TestChatProcess", chatProcessEnv, raw), exited: make(chan struct{})}
	c.cmd.Stderr = logs
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", c.name, err)
	}
	go func() {
		c.err = c.cmd.Wait()
		close(c.exited)
	}()
	t.Cleanup(c.kill)
	return c
}

// ended returns an error once the process ended.
func (c *chatProcess) ended() error {
	select {
	case <-c.exited:
		return fmt.Errorf("%s ended: %v", c.name, c.err)
	default:
		return nil
	}
}

// kill ends the process with SIGKILL and waits for it.
func (c *chatProcess) kill() {
	c.killed = true
	_ = c.cmd.Process.Kill() // fails only when it already ended
	<-c.exited
}

// stop ends the process, unless killed, with SIGTERM, as Kubernetes stops
// a pod, and returns an error unless it ends within faultWithin, with
// status 0.
func (c *chatProcess) stop() error {
	if c.killed {
		return nil
	}
	if err := c.ended(); err != nil {
		return fmt.Errorf("before it was stopped: %w", err)
	}
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("stop %s: %w", c.name, err)
	}
	select {
	case <-c.exited:
	case <-time.After(faultWithin):
		c.kill()
		return fmt.Errorf("%s still running %v after SIGTERM", c.name, faultWithin)
	}
	if c.err != nil {
		return fmt.Errorf("%s: %w", c.name, c.err)
	}
	return nil
}

// faultRig is Parley on three NATS processes, with writers recording
// every post's answer.
type faultRig struct {
	nodes []*natsNode
	admin jetstream.JetStream
	// connect connects a bus user to a node first, to the others when it
	// goes; the connection closes when the test ends.
	connect  func(user string, node int) *nats.Conn
	gateways []*clusterRig // one per gateway, for its HTTP calls
	signer   *auth.Signer
	chats    []*chatProcess
	// analytics are the analytics instances, all on the ClickHouse
	// server ch.
	analytics []*analytics.Service
	ch        *chserver.Server
	logs      *syncBuffer
	started   time.Time

	convs   []*faultConversation
	stop    chan struct{}
	writers sync.WaitGroup
	// inFlight counts the posts sent and not answered yet.
	inFlight atomic.Int32

	mu     sync.Mutex
	posts  []postRecord
	readyz []readyzRecord
	faults []faultRecord
	// visible is when each CHAT sequence was first seen on its live
	// subject, which the leader republishes to once it applied the
	// append: when the message became visible, unlike its timestamp,
	// which the leader sets when it proposes the append, before quorum.
	visible map[uint64]time.Time
}

// faultConversation is one writer's conversation and its principals.
type faultConversation struct {
	id             string
	visitor, agent string
}

// postRecord is one post and its answer.
type postRecord struct {
	conv     int
	gateway  int
	text     string
	sent     time.Time
	answered time.Time
	// status is the answer's, 0 when none came (a timeout, a dropped
	// connection).
	status int
	res    chatapi.PostResult
	// retried: the post was sent again, with the same Idempotency-Key,
	// after this answer.
	retried bool
}

// readyzRecord is one answer of a gateway's /readyz.
type readyzRecord struct {
	gateway int
	at      time.Time
	status  int
}

// faultRecord is a fault: when it happened and when posting had resumed.
type faultRecord struct {
	name    string
	at      time.Time
	resumed time.Time
	load    string // the load average when posting had resumed
}

// startFaultRig starts the cluster of TestFaults and the services on it,
// and opens conversations conversations, each with a visitor of its own.
func startFaultRig(t testing.TB, conversations int) *faultRig {
	t.Helper()
	start := time.Now()
	passwords := map[string]string{}
	for _, u := range append(buspolicy.Services(), buspolicy.Admin) {
		passwords[u] = rand.Text()
	}
	ports, err := natstest.FreePorts(2 * natstest.ClusterSize)
	if err != nil {
		t.Fatal(err)
	}
	var routes []string
	for i := range natstest.ClusterSize {
		routes = append(routes, "nats-route://"+net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[natstest.ClusterSize+i])))
	}
	r := &faultRig{logs: &syncBuffer{}, stop: make(chan struct{}), visible: map[uint64]time.Time{}, ch: chtest.Start(t)}
	for i := range natstest.ClusterSize {
		r.nodes = append(r.nodes, &natsNode{cfg: natsNodeConfig{
			Name: fmt.Sprintf("node-%d", i), Port: ports[i], ClusterPort: ports[natstest.ClusterSize+i],
			Routes: routes, StoreDir: t.TempDir(), Passwords: passwords,
		}})
	}
	t.Cleanup(func() {
		for _, n := range r.nodes {
			n.kill(t)
		}
	})
	for _, n := range r.nodes {
		n.start(t)
	}
	log := slog.New(slog.NewJSONHandler(r.logs, nil))
	t.Cleanup(func() {
		if t.Failed() {
			(&clusterRig{logs: r.logs}).logErrors(t)
		}
	})
	// connect connects user to node first, to the others when it goes.
	connect := func(user string, node int) *nats.Conn {
		nc, err := nats.Connect(r.urls(node), faultBusOptions(user, passwords[user], log)...)
		if err != nil {
			t.Fatalf("connect %s to %s: %v", user, r.nodes[node].cfg.Name, err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	adminNC := connect(buspolicy.Admin, 0)
	natstest.Eventually(t, faultWithin, "streams applied, R3", func() error {
		_, err := applyStreams(t.Context(), adminNC, faultStreams)
		return err
	})
	if r.admin, err = jetstream.New(adminNC); err != nil {
		t.Fatal(err)
	}
	r.connect = connect

	client := &http.Client{Timeout: faultWithin, Transport: &http.Transport{MaxIdleConnsPerHost: 2 * conversations}}
	t.Cleanup(client.CloseIdleConnections)

	var listeners []net.Listener
	for range 2 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = ln.Close() })
		listeners = append(listeners, ln)
	}
	// Privacy and the gateways in this process; chat in processes of its
	// own, to be killed, each on the node newRigServices would connect it
	// to.
	rs := newRigServices(t, log, connect, faultStreams, 2, 0, listeners)
	r.signer = rs.signer
	// Analytics last, after the gateways, on the one ClickHouse server.
	for i := range 2 {
		nc, name := connect(buspolicy.Analytics, i), fmt.Sprintf("analytics-%d", i)
		an := analytics.New(analytics.Deps{NC: nc, Log: log.With("service", name), ClickHouseDSN: r.ch.DSN()})
		r.analytics = append(r.analytics, an)
		rs.add(name, an.Run)
	}
	for _, ln := range listeners {
		r.gateways = append(r.gateways, &clusterRig{admin: r.admin, base: "http://" + ln.Addr().String(), signer: r.signer, logs: r.logs, client: client})
	}
	for i := range 2 {
		cfg := chatProcessConfig{Name: fmt.Sprintf("chat-%d", i), URLs: r.urls(i + 1), Password: passwords[buspolicy.Chat]}
		r.chats = append(r.chats, startChatProcess(t, cfg, r.logs))
	}
	svcs, ended := rs.start()
	t.Cleanup(func() {
		// In stopInOrder's order: the gateways, then chat and privacy,
		// then analytics.
		err := stopInOrder(svcs[2:4])
		for _, c := range r.chats {
			err = errors.Join(err, c.stop())
		}
		if err := errors.Join(err, stopInOrder(svcs[:2], svcs[4:])); err != nil {
			t.Errorf("stop the services: %v", err)
		}
	})
	natstest.Eventually(t, faultWithin, "every instance serving", func() error {
		select {
		case name := <-ended:
			t.Fatalf("%s stopped before it served", name)
		default:
		}
		for _, c := range r.chats {
			if err := c.ended(); err != nil {
				t.Fatalf("before it served: %v", err)
			}
		}
		for _, svc := range []string{chatapi.Service, privacyapi.Service, analyticsapi.Service} {
			if n := microInstances(adminNC, svc); n != 2 {
				return fmt.Errorf("%d instances of %s answer, want 2", n, svc)
			}
		}
		if err := r.analyticsReading(t); err != nil {
			return err
		}
		for _, g := range r.gateways {
			if status, err := g.do(http.MethodGet, "/readyz", "", nil, nil); err != nil || status != http.StatusOK {
				return fmt.Errorf("GET %s/readyz = %d, %v", g.base, status, err)
			}
		}
		return nil
	})
	r.openConversations(t, conversations)
	t.Logf("cluster, services and %d conversations ready in %v", conversations, time.Since(start).Round(time.Millisecond))
	return r
}

// urls are the nodes' client URLs, comma separated, node's first: a
// client given them connects to node, and to the next when it goes.
func (r *faultRig) urls(node int) string {
	urls := make([]string, 0, len(r.nodes))
	for i := range r.nodes {
		urls = append(urls, r.nodes[(node+i)%len(r.nodes)].url())
	}
	return strings.Join(urls, ",")
}

// watchLive records when each message stored in CHAT becomes visible: a
// subscriber on each node, so that one of them is connected whichever
// node is down or frozen; the first to see a message tells.
func (r *faultRig) watchLive(t *testing.T) {
	t.Helper()
	for i := range r.nodes {
		nc := r.connect(buspolicy.Admin, i)
		_, err := nc.Subscribe(stream.LiveChatSubjects, func(m *nats.Msg) {
			at := time.Now()
			seq, err := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
			if err != nil {
				return // not a republished event: no stored message
			}
			r.mu.Lock()
			defer r.mu.Unlock()
			if first, ok := r.visible[seq]; !ok || at.Before(first) {
				r.visible[seq] = at
			}
		})
		if err != nil {
			t.Fatalf("subscribe %s on %s: %v", stream.LiveChatSubjects, r.nodes[i].cfg.Name, err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}
}

// microInstances counts the instances of a micro service that answer a
// ping within a moment.
func microInstances(nc *nats.Conn, service string) int {
	inbox := nc.NewRespInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return 0
	}
	defer sub.Unsubscribe()
	if err := nc.PublishRequest("$SRV.PING."+service, inbox, nil); err != nil {
		return 0
	}
	n := 0
	for {
		if _, err := sub.NextMsg(500 * time.Millisecond); err != nil {
			return n
		}
		n++
	}
}

// openConversations lifts the tenant's pace of messages (the writers post
// faster than a person) and opens n conversations, one a writer.
func (r *faultRig) openConversations(t testing.TB, n int) {
	t.Helper()
	g := r.gateways[0]
	admin, err := r.signer.Issue(auth.Principal{Tenant: clusterTenant, ID: "ada", Role: auth.RoleAdmin}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string]any{"retention_days": 365, "collect_network_data": false, "messages_per_conversation_per_minute": 100_000}
	if status, err := g.do(http.MethodPut, "/v1/settings", admin, settings, nil); err != nil || status != http.StatusOK {
		t.Fatalf("PUT /v1/settings = %d, %v", status, err)
	}
	for i := range n {
		c := &faultConversation{}
		_, c.visitor = newVisitor(t, r.gateways[i%2].base, clusterTenant)
		if c.agent, err = r.signer.Issue(auth.Principal{Tenant: clusterTenant, ID: fmt.Sprintf("agent-%d", i), Role: auth.RoleAgent}, time.Hour); err != nil {
			t.Fatal(err)
		}
		var opened struct{ ID string }
		if status, err := g.do(http.MethodPost, "/v1/conversations", c.visitor, map[string]string{"text": fmt.Sprintf("c%d opening", i)}, &opened); err != nil || status != http.StatusCreated {
			t.Fatalf("open conversation %d: %d, %v", i, status, err)
		}
		c.id = opened.ID
		r.convs = append(r.convs, c)
	}
}

// startLoad starts the writers and a poller of each gateway's /readyz.
func (r *faultRig) startLoad(t *testing.T) {
	r.started = time.Now()
	for i, c := range r.convs {
		r.writers.Go(func() {
			for k := 0; ; k++ {
				token := c.visitor
				if k%2 == 1 {
					token = c.agent
				}
				key := http.Header{"Idempotency-Key": {rand.Text()}}
				for {
					p := postRecord{conv: i, gateway: (i + k) % 2, text: fmt.Sprintf("c%d p%d", i, k), sent: time.Now()}
					var err error
					r.inFlight.Add(1)
					p.status, err = r.gateways[p.gateway].doWith(http.MethodPost, "/v1/conversations/"+c.id+"/messages", token, key, map[string]string{"text": p.text}, &p.res)
					r.inFlight.Add(-1)
					if err != nil {
						p.status = 0
					}
					p.answered = time.Now()
					p.retried = i%2 == 1 && (p.status == 0 || p.status == http.StatusServiceUnavailable)
					r.mu.Lock()
					r.posts = append(r.posts, p)
					r.mu.Unlock()
					select {
					case <-r.stop:
						return
					case <-time.After(faultPace):
					}
					if !p.retried {
						break
					}
				}
			}
		})
	}
	for i, g := range r.gateways {
		r.writers.Go(func() {
			for {
				status, _ := g.do(http.MethodGet, "/readyz", "", nil, nil)
				r.mu.Lock()
				r.readyz = append(r.readyz, readyzRecord{gateway: i, at: time.Now(), status: status})
				r.mu.Unlock()
				select {
				case <-r.stop:
					return
				case <-time.After(200 * time.Millisecond):
				}
			}
		})
	}
	t.Cleanup(r.stopLoad)
}

func (r *faultRig) stopLoad() {
	select {
	case <-r.stop:
	default:
		close(r.stop)
	}
	r.writers.Wait()
}

// fault runs do, then waits until posting resumed, and records both.
func (r *faultRig) fault(t *testing.T, name string, do func()) {
	t.Helper()
	f := faultRecord{name: name, at: time.Now()}
	do()
	t.Logf("%s at %s", name, f.at.Format(time.StampMilli))
	f.resumed = r.waitResumed(t, name, f.at)
	f.load = loadAverage()
	r.faults = append(r.faults, f)
}

// waitResumed waits until each gateway answered faultResumeRun posts in a
// row with 201, all sent after since, and returns when.
func (r *faultRig) waitResumed(t *testing.T, what string, since time.Time) time.Time {
	t.Helper()
	natstest.Eventually(t, faultWithin, "posting resumed after "+what, func() error {
		r.mu.Lock()
		defer r.mu.Unlock()
		for g := range r.gateways {
			run := 0
			var last []string // the answers of the posts in the run and the one that ended it
			for i := len(r.posts) - 1; i >= 0 && run < faultResumeRun; i-- {
				p := r.posts[i]
				if p.gateway != g {
					continue
				}
				last = append(last, fmt.Sprintf("%d in %v", p.status, p.answered.Sub(p.sent).Round(time.Millisecond)))
				if p.sent.Before(since) || p.status != http.StatusCreated {
					break
				}
				run++
			}
			if run < faultResumeRun {
				return fmt.Errorf("gateway-%d: %d posts in a row answered 201, want %d; the last answers, latest first: %s",
					g, run, faultResumeRun, strings.Join(last, ", "))
			}
		}
		return nil
	})
	return time.Now()
}

// waitInFlight waits until at least n posts are in flight and returns how
// many are.
func (r *faultRig) waitInFlight(t *testing.T, n int) int {
	t.Helper()
	var got int
	natstest.Until(t, faultWithin, fmt.Sprintf("%d posts in flight", n), func() bool {
		got = int(r.inFlight.Load())
		return got >= n
	})
	return got
}

// streamLeader returns the index of the node leading stream name.
func (r *faultRig) streamLeader(t *testing.T, name string) int {
	t.Helper()
	leader := -1
	natstest.Eventually(t, faultWithin, name+" has a leader", func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		s, err := r.admin.Stream(ctx, name)
		if err != nil {
			return err
		}
		info, err := s.Info(ctx)
		if err != nil {
			return err
		}
		for i, n := range r.nodes {
			if info.Cluster != nil && info.Cluster.Leader == n.cfg.Name {
				leader = i
				return nil
			}
		}
		return fmt.Errorf("stream %s: no leader", name)
	})
	return leader
}

// waitCurrent waits until every stream has a leader and two replicas,
// both current: the cluster healed from a fault.
func (r *faultRig) waitCurrent(t *testing.T) {
	t.Helper()
	natstest.Eventually(t, faultWithin, "every stream's replicas current", func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		list := r.admin.ListStreams(ctx)
		for info := range list.Info() {
			c := info.Cluster
			if c == nil || c.Leader == "" || len(c.Replicas) != natstest.ClusterSize-1 {
				return fmt.Errorf("stream %s: cluster %+v", info.Config.Name, c)
			}
			for _, p := range c.Replicas {
				if !p.Current || p.Offline {
					return fmt.Errorf("stream %s: replica %s not current", info.Config.Name, p.Name)
				}
			}
		}
		return list.Err()
	})
}

// faultOutcome is what the checks of a fault run counted.
type faultOutcome struct {
	acknowledged int
	// seenLive counts the posts answered 201 that a live subscriber saw:
	// all or nearly, or the tally of the posts answered 503 tells little.
	seenLive int
	// refused counts the posts not answered 201, by status (0: no answer).
	refused map[int]int
	// storedBefore503 counts the posts answered 503 that became visible
	// before the answer (the answer of an instance that lost its
	// connection between storing and answering, or whose append's
	// acknowledgement came too late): a client repeats them with their
	// Idempotency-Key (docs/api.md).
	storedBefore503 int
	// committedAfter503 counts the posts answered 503 that became visible
	// after the answer although proposed before it: an append the
	// stream's leader proposed and could not commit before it failed,
	// committed by the next one once elected, seconds later (or one whose
	// commit outlasted the request's deadline) — the "maybe stored" of a
	// 503 (docs/operations.md, "Failover").
	committedAfter503 int
	// unseen503 counts the posts answered 503, stored, proposed before
	// the answer, that no live subscriber saw (a leader killed right
	// after applying them): when they became visible is not known.
	unseen503 int
	// retried counts the answers not 201 after which the post was sent
	// again with its Idempotency-Key; retriedStored, the posts so sent
	// that were answered 201 in the end.
	retried, retriedStored int
	// repeatRefused lists the repeats of a post, with its key, refused
	// otherwise than with 503.
	repeatRefused []string
	// unanswered counts the posts refused otherwise than with 503 (0: no
	// answer), by whether they were stored.
	unanswered map[string]int
	// facts counts the facts of the stored messages; factRows, the rows
	// ClickHouse's facts table holds: the facts, and the copies of those
	// inserted again not merged yet.
	facts    int
	factRows string
	// metrics are the totals of the metrics compared, as an analyst
	// reads them.
	metrics []string
	// analyticsReady counts the analytics instances ready at the end:
	// the one reading ANALYTICS, not the standby.
	analyticsReady int
}

// check reads every transcript and ANALYTICS, and fails t for what they
// lack, double or hold too late.
func (r *faultRig) check(t *testing.T) faultOutcome {
	t.Helper()
	out := faultOutcome{refused: map[int]int{}, unanswered: map[string]int{}}
	byConv := make([][]postRecord, len(r.convs))
	for _, p := range r.posts {
		byConv[p.conv] = append(byConv[p.conv], p)
		if p.status == http.StatusCreated {
			out.acknowledged++
		} else {
			out.refused[p.status]++
		}
	}
	wantFacts := map[string]map[int]int{
		analyticsapi.KindOpened:        {1: len(r.convs)},
		analyticsapi.KindFirstResponse: {1: len(r.convs)},
		analyticsapi.KindMessage:       {},
	}
	chatStream, err := r.admin.Stream(t.Context(), stream.Chat)
	if err != nil {
		t.Fatal(err)
	}
	storedAt := func(seq uint64) string {
		m, err := chatStream.GetMsg(t.Context(), seq)
		if err != nil {
			return err.Error()
		}
		return m.Time.Format(time.StampMilli)
	}
	for i, c := range r.convs {
		ms := r.readTranscript(t, c)
		wantFacts[analyticsapi.KindMessage][len(ms)]++
		stored := map[string][]chatapi.Message{}
		for _, m := range ms[1:] {
			if m.Text != nil {
				stored[*m.Text] = append(stored[*m.Text], m)
			}
		}
		if !slices.IsSortedFunc(ms, func(a, b chatapi.Message) int { return int(a.Seq) - int(b.Seq) }) {
			t.Errorf("conversation %d: transcript not in the order of its sequence numbers", i)
		}
		var lastSeq uint64
		retriedPosts := map[string]bool{}
		for _, p := range byConv[i] {
			found := stored[p.text]
			if p.status == http.StatusCreated && retriedPosts[p.text] {
				out.retriedStored++
			}
			retriedPosts[p.text] = retriedPosts[p.text] || p.retried
			switch {
			case len(found) > 1:
				var copies []string
				for _, m := range found {
					copies = append(copies, fmt.Sprintf("id %s seq %d stored %s", m.ID, m.Seq, storedAt(m.Seq)))
				}
				t.Errorf("conversation %d: %q (sent %s, answered %d at %s) stored %d times: %s", i, p.text,
					p.sent.Format(time.StampMilli), p.status, p.answered.Format(time.StampMilli), len(found), strings.Join(copies, "; "))
			case p.status == http.StatusCreated && len(found) == 0:
				t.Errorf("conversation %d: %q answered 201 (seq %d) is not in the transcript", i, p.text, p.res.Seq)
			case p.status == http.StatusCreated && (found[0].ID != p.res.ID || found[0].Seq != p.res.Seq):
				t.Errorf("conversation %d: %q answered id %s seq %d, stored as %s seq %d", i, p.text, p.res.ID, p.res.Seq, found[0].ID, found[0].Seq)
			case p.status == http.StatusCreated:
				// A writer posts one at a time: its posts are stored in
				// the order they were answered.
				if p.res.Seq <= lastSeq {
					t.Errorf("conversation %d: %q answered seq %d after a post answered seq %d", i, p.text, p.res.Seq, lastSeq)
				}
				lastSeq = p.res.Seq
				r.mu.Lock()
				if _, ok := r.visible[p.res.Seq]; ok {
					out.seenLive++
				}
				r.mu.Unlock()
			case p.retried:
				// Sent again with its key: stored at most once (above)
				// is what counts.
				out.retried++
			case p.status == http.StatusServiceUnavailable && len(found) == 1:
				// The leader stamps an append when it proposes it: a
				// later stamp is a store begun after the answer, which the
				// request's deadline forbids. One proposed before and
				// committed after, by the next leader, is what a 503 may
				// mean (docs/operations.md, "Failover"), and is counted.
				m, err := chatStream.GetMsg(t.Context(), found[0].Seq)
				if err != nil {
					t.Fatalf("read CHAT %d: %v", found[0].Seq, err)
				}
				r.mu.Lock()
				visible, seen := r.visible[found[0].Seq]
				r.mu.Unlock()
				switch {
				case m.Time.After(p.answered):
					t.Errorf("conversation %d: %q answered 503 at %s, its append proposed %v later (seq %d, visible %s)", i, p.text,
						p.answered.Format(time.StampMilli), m.Time.Sub(p.answered), found[0].Seq, visible.Format(time.StampMilli))
				case seen && visible.After(p.answered):
					out.committedAfter503++
				case seen:
					out.storedBefore503++
				default:
					out.unseen503++
				}
			case p.status != http.StatusCreated && p.status != http.StatusServiceUnavailable:
				// No answer, or another refusal: either is fine, stored
				// (the client repeats it with its Idempotency-Key) or
				// not, as long as it is stored at most once (above).
				if retriedPosts[p.text] && p.status != 0 {
					// docs/api.md, "Idempotency": a repeat answers what
					// the first request answered, 201 once stored.
					out.repeatRefused = append(out.repeatRefused, fmt.Sprintf("%q %d at %s, stored %d times", p.text, p.status, p.answered.Format(time.StampMilli), len(found)))
				}
				if len(found) == 1 {
					out.unanswered[fmt.Sprintf("%d stored", p.status)]++
				} else {
					out.unanswered[fmt.Sprintf("%d absent", p.status)]++
				}
			}
		}
	}
	if out.seenLive < out.acknowledged*9/10 {
		t.Errorf("%d of %d posts answered 201 seen on %s: when a post became visible is not known", out.seenLive, out.acknowledged, stream.LiveChatSubjects)
	}
	// The stream first, then what analytics made of it: a fact missing
	// from both was never published, one missing from ClickHouse alone
	// was lost on its way in.
	if diff := cmp.Diff(wantFacts, r.gateways[0].facts(t)); diff != "" {
		t.Errorf("facts in ANALYTICS differ from each stored message counted once (-want +got):\n%s", diff)
	}
	// Twice the wait: a fact delivered to an instance and not acked there
	// comes back after the ingest's ack wait, a minute. Acknowledged is
	// not yet inserted, though: an instance acknowledges every fact up to
	// the one it acknowledges, also those another still holds.
	waitConsumed(t, r.admin, stream.Analytics, 2*faultWithin)
	var stored map[string]map[int]int
	published := streamFacts(t, r.admin)
	consumed := time.Now()
	var first error // the first difference, when the facts were not all in at once
	natstest.Eventually(t, faultWithin, "each stored message's facts in ClickHouse once", func() error {
		stored = r.storedFacts(t)
		if diff := cmp.Diff(wantFacts, stored); diff != "" {
			err := fmt.Errorf("facts in ClickHouse differ from each stored message counted once (-want +got):\n%s%s", diff, r.factsAmiss(published))
			if first == nil {
				first = err
			}
			return err
		}
		return nil
	})
	if first != nil {
		t.Logf("facts in ClickHouse as they were when ANALYTICS had none unacknowledged, %v before they were all in: %v", time.Since(consumed).Round(time.Millisecond), first)
	}
	for _, convs := range stored {
		for n, c := range convs {
			out.facts += n * c
		}
	}
	rows, err := chtest.Query(r.ch.HTTPAddr(), "SELECT count() FROM facts")
	if err != nil {
		t.Fatalf("count the rows of facts: %v", err)
	}
	out.factRows = rows
	for _, an := range r.analytics {
		if an.Ready(t.Context()) == nil {
			out.analyticsReady++
		}
	}
	for _, m := range []struct{ kind, metric string }{{analyticsapi.KindOpened, analyticsapi.MetricConversations}, {analyticsapi.KindMessage, analyticsapi.MetricMessages}} {
		kind, metric := m.kind, m.metric
		want := 0
		for n, convs := range wantFacts[kind] {
			want += n * convs
		}
		got, ok := r.metricTotal(t, metric)
		out.metrics = append(out.metrics, fmt.Sprintf("%s %d", metric, got))
		switch {
		case !ok:
			t.Logf("metric %s: a day of the run has too few visitors to be shown (a run across midnight): not compared", metric)
		case got != want:
			t.Errorf("metric %s counts %d over the run, want %d: each stored message's fact once", metric, got, want)
		}
	}
	return out
}

// storedFacts counts the facts in ClickHouse as the metrics count them,
// once each (FINAL: the facts table keeps one row per fact id, merging the
// rows of a fact inserted again in the background): for each kind, how
// many conversations have how many facts of it.
func (r *faultRig) storedFacts(t *testing.T) map[string]map[int]int {
	t.Helper()
	q := "SELECT kind, count() FROM facts FINAL WHERE tenant = '" + clusterTenant + "' GROUP BY kind, conversation_pseudonym FORMAT TSV"
	res, err := chtest.Query(r.ch.HTTPAddr(), q)
	if err != nil {
		t.Fatalf("count the facts in ClickHouse: %v", err)
	}
	facts := map[string]map[int]int{}
	for line := range strings.Lines(res) {
		kind, count, _ := strings.Cut(strings.TrimSpace(line), "\t")
		n, err := strconv.Atoi(count)
		if err != nil {
			t.Fatalf("count the facts in ClickHouse: row %q: %v", line, err)
		}
		if facts[kind] == nil {
			facts[kind] = map[int]int{}
		}
		facts[kind][n]++
	}
	return facts
}

// factsAmiss names the facts published missing from ClickHouse and the
// fact ids ClickHouse holds that were not published, ten of each at most.
func (r *faultRig) factsAmiss(published []analyticsapi.Fact) string {
	res, err := chtest.Query(r.ch.HTTPAddr(), "SELECT DISTINCT fact_id FROM facts WHERE tenant = '"+clusterTenant+"' FORMAT TSV")
	if err != nil {
		return fmt.Sprintf("\nlist the fact ids in ClickHouse: %v", err)
	}
	inStore := map[string]bool{}
	for line := range strings.Lines(res) {
		inStore[strings.TrimSpace(line)] = true
	}
	var missing []string
	for i, f := range published {
		if !inStore[f.ID] {
			missing = append(missing, fmt.Sprintf("%s at %s (fact %d of ANALYTICS)", f.ID, f.At.Format(time.StampMilli), i+1))
		}
		delete(inStore, f.ID)
	}
	extra := slices.Sorted(maps.Keys(inStore))
	return fmt.Sprintf("\nin ANALYTICS, not in ClickHouse (%d): %s\nin ClickHouse, not in ANALYTICS (%d): %s",
		len(missing), strings.Join(missing[:min(10, len(missing))], "; "), len(extra), strings.Join(extra[:min(10, len(extra))], "; "))
}

// metricTotal sums the counts of a metric over the days of the run, as an
// analyst reads them through the gateway and the analytics instances; ok is
// false when a day's point is suppressed, having too few visitors.
func (r *faultRig) metricTotal(t *testing.T, metric string) (total int, ok bool) {
	t.Helper()
	analyst, err := r.signer.Issue(auth.Principal{Tenant: clusterTenant, ID: "ann", Role: auth.RoleAnalyst}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	from := r.started.UTC().Truncate(24 * time.Hour)
	q := url.Values{"from": {from.Format(time.RFC3339)}, "to": {time.Now().UTC().Truncate(24 * time.Hour).Add(24 * time.Hour).Format(time.RFC3339)}, "interval": {analyticsapi.IntervalDay}}
	var res analyticsapi.MetricsResult
	natstest.Eventually(t, faultWithin, "metric "+metric+" answered", func() error {
		status, err := r.gateways[0].do(http.MethodGet, "/v1/metrics/"+metric+"?"+q.Encode(), analyst, nil, &res)
		if err == nil && status != http.StatusOK {
			err = fmt.Errorf("GET /v1/metrics/%s = %d", metric, status)
		}
		return err
	})
	for _, p := range res.Points {
		if p.Count == nil {
			return 0, false
		}
		total += int(*p.Count)
	}
	return total, true
}

// analyticsReading returns nil once an analytics instance is ready: its
// schema migrated, it reads ANALYTICS. One instance reads at a time; the
// other waits as a standby, not ready (docs/operations.md).
func (r *faultRig) analyticsReading(t testing.TB) error {
	var errs []error
	for i, an := range r.analytics {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		err := an.Ready(ctx)
		cancel()
		if err == nil {
			return nil
		}
		errs = append(errs, fmt.Errorf("analytics-%d: %w", i, err))
	}
	return errors.Join(errs...)
}

// readTranscript reads a conversation's whole transcript as its visitor,
// page after page, trying again while the cluster settles.
func (r *faultRig) readTranscript(t *testing.T, c *faultConversation) []chatapi.Message {
	t.Helper()
	var ms []chatapi.Message
	natstest.Eventually(t, faultWithin, "transcript read", func() error {
		ms = nil
		cursor := ""
		for {
			var page struct {
				Messages   []chatapi.Message `json:"messages"`
				NextCursor *string           `json:"next_cursor"`
			}
			path := "/v1/conversations/" + c.id + "/messages?limit=" + strconv.Itoa(chatapi.PageItems)
			if cursor != "" {
				path += "&cursor=" + url.QueryEscape(cursor)
			}
			status, err := r.gateways[0].do(http.MethodGet, path, c.visitor, nil, &page)
			if err == nil && status != http.StatusOK {
				err = fmt.Errorf("GET %s = %d", path, status)
			}
			if err != nil {
				return err
			}
			ms = append(ms, page.Messages...)
			if page.NextCursor == nil {
				return nil
			}
			cursor = *page.NextCursor
		}
	})
	return ms
}

// faultFigures are the figures of the posts sent between a fault and
// when the test saw posting resumed.
type faultFigures struct {
	posts   int
	refused map[int]int // by status, 0: no answer
	// resumeAfter is from the fault to the answer of the first post
	// answered 201 among those sent after the last one refused; when none
	// was refused, the longest any post took.
	resumeAfter time.Duration
	anyRefused  bool
	slowest     time.Duration
	readyz      string
	// inFlight counts the posts sent before the fault and answered after
	// it, by status (0: no answer); they count in none of the above.
	inFlight map[int]int
}

func (f faultFigures) String() string {
	inFlight := fmt.Sprintf("in flight at it, by answer: %v", f.inFlight)
	if !f.anyRefused {
		return fmt.Sprintf("no post refused (%d posts, the slowest %.1fs); %s; %s", f.posts, f.slowest.Seconds(), inFlight, f.readyz)
	}
	return fmt.Sprintf("posting resumed %.1fs after it (%d posts, %d answered 201, refused %v, the slowest %.1fs); %s; %s",
		f.resumeAfter.Seconds(), f.posts, f.posts-sumValues(f.refused), f.refused, f.slowest.Seconds(), inFlight, f.readyz)
}

func sumValues(m map[int]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// resume tells how long posting took to resume after f.
func (r *faultRig) resume(f faultRecord) faultFigures {
	end := f.resumed
	fig := faultFigures{refused: map[int]int{}, inFlight: map[int]int{}}
	var (
		window      []postRecord
		lastRefused time.Time
	)
	for _, p := range r.posts {
		if p.sent.Before(f.at) && p.answered.After(f.at) {
			fig.inFlight[p.status]++
		}
		if p.sent.Before(f.at) || !p.sent.Before(end) {
			continue
		}
		window = append(window, p)
		fig.slowest = max(fig.slowest, p.answered.Sub(p.sent))
		if p.status != http.StatusCreated {
			fig.refused[p.status]++
			if p.sent.After(lastRefused) {
				lastRefused = p.sent
			}
		}
	}
	fig.posts = len(window)
	// When each gateway's /readyz did not answer 200, from the fault on.
	notReady := map[int][2]float64{}
	for _, z := range r.readyz {
		if z.status == http.StatusOK || z.at.Before(f.at) || !z.at.Before(end) {
			continue
		}
		at := z.at.Sub(f.at).Seconds()
		span, ok := notReady[z.gateway]
		if !ok {
			span[0] = at
		}
		span[1] = at
		notReady[z.gateway] = span
	}
	fig.readyz = "/readyz 200 throughout"
	if len(notReady) > 0 {
		var spans []string
		for _, g := range slices.Sorted(maps.Keys(notReady)) {
			spans = append(spans, fmt.Sprintf("gateway-%d %.1f-%.1fs", g, notReady[g][0], notReady[g][1]))
		}
		fig.readyz = "/readyz not 200: " + strings.Join(spans, ", ")
	}
	fig.resumeAfter = fig.slowest
	if lastRefused.IsZero() {
		return fig
	}
	fig.anyRefused = true
	var resumed time.Time
	for _, p := range window {
		if p.status == http.StatusCreated && p.sent.After(lastRefused) && (resumed.IsZero() || p.answered.Before(resumed)) {
			resumed = p.answered
		}
	}
	fig.resumeAfter = resumed.Sub(f.at)
	return fig
}

// loadAverage is the machine's load average, for the figures printed.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}
