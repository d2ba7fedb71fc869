package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/parley-chat/parley/pkg/personkey"
	"github.com/parley-chat/parley/services/gateway"
	"github.com/parley-chat/parley/services/privacy"
)

// parseFlags parses args into fs, then fills every flag not given on the
// command line from its PARLEY_* environment variable. Asked for help, it
// prints fs's usage to stdout and returns flag.ErrHelp. A bad flag is a
// usageError that main prints once: the flag package would print it too,
// followed by every flag.
func parseFlags(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) error {
	usage := fs.Usage
	fs.Usage = func() {}
	fs.SetOutput(io.Discard)
	parseErr := fs.Parse(args)
	fs.Usage = usage
	fs.SetOutput(stderr)
	switch {
	case errors.Is(parseErr, flag.ErrHelp):
		fs.SetOutput(stdout)
		fs.Usage()
		return parseErr
	case parseErr != nil:
		return usageError{fmt.Sprintf("%v; run '%s -h' for usage", parseErr, fs.Name())}
	case fs.NArg() > 0:
		return usageError{fmt.Sprintf("unexpected argument %q; run '%s -h' for usage", fs.Arg(0), fs.Name())}
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] || err != nil {
			return
		}
		name := envName(f.Name)
		if v, ok := os.LookupEnv(name); ok {
			if e := f.Value.Set(v); e != nil {
				err = usageError{fmt.Sprintf("%s=%q: %v", name, v, e)}
			}
		}
	})
	return err
}

func envName(flagName string) string {
	return "PARLEY_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// gatewayLimitFlags defines the gateway's process-wide limit flags, the same
// for `parley all` and `parley gateway`.
func gatewayLimitFlags(fs *flag.FlagSet, maxSessions, maxConnsPerAddr *int, clientAddrHeader *string) {
	fs.IntVar(maxSessions, "max-sessions", 0, "live WebSocket sessions of the process (0: the open-file limit less a tenth, at least 256; negative: no bound)")
	fs.IntVar(maxConnsPerAddr, "max-conns-per-addr", defaultMaxConnsPerAddr, "HTTP connections, WebSocket sessions included, of one client address (an IPv6 /64) at once (0: no bound; behind a reverse proxy every connection comes from the proxy: set 0 there)")
	fs.StringVar(clientAddrHeader, "client-addr-header", "", "header a trusted reverse proxy writes the client address in, such as X-Forwarded-For, for the limit on registrations per address (default: the peer address; set it only behind a proxy that overwrites the header)")
}

// accessTokenFlag defines how long the gateway's access tokens last.
func accessTokenFlag(fs *flag.FlagSet, ttl *time.Duration) {
	fs.DurationVar(ttl, "access-token-ttl", gateway.DefaultAccessTokenTTL, "how long an access token of a session lasts; a token stays valid that long after its session is signed out or revoked")
}

// staffSessionFlag defines how long a member of staff's session lasts.
func staffSessionFlag(fs *flag.FlagSet, ttl *time.Duration) {
	fs.DurationVar(ttl, "staff-session-ttl", privacy.DefaultStaffSessionTTL, "how long a member of staff's session lasts from sign-in, however often it is refreshed")
}

// privateWebhooksFlag defines whether the privacy service may send
// webhooks to this host and private networks (privacy.Deps.PrivateWebhooks).
func privateWebhooksFlag(fs *flag.FlagSet, on *bool) {
	fs.BoolVar(on, "private-webhooks", false, "let bots and integrations have webhooks at this host's and private networks' addresses (a bot beside Parley, in development); otherwise webhooks go to public addresses only")
}

// keyCacheFlag defines the size of a service's cache of data subjects'
// keys (personkey.Cache; the privacy service's cache of unwrapped keys).
func keyCacheFlag(fs *flag.FlagSet, size *int) {
	fs.IntVar(size, "key-cache-size", personkey.DefaultCacheSize, "data subjects whose keys a service keeps in memory, the least recently used leaving first and fetched again on its next use (0: the default)")
}

// defaultMaxConnsPerAddr leaves room for an office behind one NAT address:
// a browser opens up to six connections to a host, and a live session one
// more.
const defaultMaxConnsPerAddr = 128
