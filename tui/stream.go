package tui

import (
	"context"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	tea "charm.land/bubbletea/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/navarch/navarch/internal/apierr"
	"github.com/navarch/navarch/internal/display"
	"github.com/navarch/navarch/internal/rpcclient"
	"github.com/navarch/navarch/internal/watchclient"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
)

// streamMsg carries the WatchFleet messages that arrived since the last
// one, so a burst costs one update and one redraw.
type streamMsg struct {
	msgs []Message
}

// connectedMsg says the stream is open.
type connectedMsg struct{ resumed bool }

// disconnectedMsg says the stream broke; the watcher retries after retry.
type disconnectedMsg struct {
	// err is what happened, in a few words (brokenBecause); detail is
	// the control plane's or the transport's own words, "" when err
	// already says all of them.
	err, detail string
	retry       time.Duration
	attempt     int
}

// watcher streams WatchFleet into the console, reconnecting with backoff
// and resuming from the last revision it delivered. Its client's
// connection follows the leader among the control planes it was given,
// so a reconnection resumes on whichever leads then. It runs on its own
// goroutine; the console reads from out through listen.
type watcher struct {
	client controlplanev1.ControlPlaneServiceClient
	out    chan tea.Msg

	mu      sync.Mutex
	pending tea.Msg // read while batching, delivered by the next listen
}

func newWatcher(c controlplanev1.ControlPlaneServiceClient) *watcher {
	return &watcher{client: c, out: make(chan tea.Msg, 1024)}
}

// batchLimit caps the stream messages folded into one streamMsg.
const batchLimit = 512

// listen waits for the next message from the watcher, then takes whatever
// else is already waiting.
func (w *watcher) listen() tea.Cmd {
	return func() tea.Msg {
		w.mu.Lock()
		defer w.mu.Unlock()
		first := w.pending
		w.pending = nil
		if first == nil {
			var ok bool
			if first, ok = <-w.out; !ok {
				return nil
			}
		}
		sm, isStream := first.(streamMsg)
		if !isStream {
			return first
		}
		for len(sm.msgs) < batchLimit {
			select {
			case next := <-w.out:
				if more, ok := next.(streamMsg); ok {
					sm.msgs = append(sm.msgs, more.msgs...)
					continue
				}
				// A connection change goes out next, after this batch.
				w.pending = next
				return sm
			default:
				return sm
			}
		}
		return sm
	}
}

// run streams until ctx ends.
func (w *watcher) run(ctx context.Context) {
	defer close(w.out)
	var since uint64
	attempt := 0
	for ctx.Err() == nil {
		// The stream's messages are decoded on several cores, so that a
		// snapshot of a large fleet arrives in a fraction of the time.
		stream, err := watchclient.Watch(ctx, w.client, &controlplanev1.WatchFleetRequest{SinceRevision: since}, DecodeMessage)
		if err == nil {
			var first Message
			first, err = stream.Recv()
			if err == nil {
				attempt = 0
				if !w.send(ctx, connectedMsg{resumed: first.resp.GetSnapshot() == nil}) {
					return
				}
				for err == nil {
					// A complete snapshot sets the revision outright: a control
					// plane with a new store may count from lower than before.
					// A snapshot's earlier chunks do not count: a stream that
					// breaks among them resumes from what the console had.
					if s := first.resp.GetSnapshot(); s != nil {
						if s.GetComplete() {
							since = first.resp.GetRevision()
						}
					} else if first.resp.GetRevision() > since {
						since = first.resp.GetRevision()
					}
					if !w.send(ctx, streamMsg{msgs: []Message{first}}) {
						return
					}
					first, err = stream.Recv()
				}
			}
		}
		if ctx.Err() != nil {
			return
		}
		attempt++
		wait := reconnectDelay(attempt)
		if leader, standby := apierr.Leader(err); standby && leader != "" && attempt == 1 {
			// A control plane that stepped down named the leader, and the
			// connection (rpcclient) points there now: go at once, the
			// first time; two that name each other are backed off from.
			wait = 0
		}
		if !w.send(ctx, disconnectedMsg{err: brokenBecause(err), detail: brokenDetail(err), retry: wait, attempt: attempt}) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// brokenBecause says in a few words why the stream broke, as the banner
// shows it: "connection refused", "TLS failure: …", "not authenticated:
// …". The control plane's own refusals are told apart by their code. A
// connection that never reached it is an Unavailable status whose only
// account of the cause is the dialler's or the TLS stack's error, as text,
// so rpcclient.Unreachable reads it, as the CLI's explanations do.
func brokenBecause(err error) string {
	st := status.Convert(err)
	msg := display.FirstLine(st.Message())
	if leader, standby := apierr.Leader(err); standby {
		if leader == "" {
			return "standby: no leader elected yet"
		}
		return "standby: moving to the leader at " + leader
	}
	switch st.Code() {
	case codes.Unauthenticated:
		return "not authenticated: " + msg
	case codes.PermissionDenied:
		return "permission denied: " + msg
	case codes.DeadlineExceeded:
		return "timed out"
	case codes.Unavailable:
		return rpcclient.Unreachable(st.Message())
	}
	return msg
}

// brokenDetail is the rest of the story brokenBecause tells: the status
// message, which rpcclient begins with what to change, or "" when
// brokenBecause already said it whole.
func brokenDetail(err error) string {
	msg := status.Convert(err).Message()
	if strings.HasSuffix(brokenBecause(err), msg) {
		return ""
	}
	return msg
}

func (w *watcher) send(ctx context.Context, m tea.Msg) bool {
	select {
	case w.out <- m:
		return true
	case <-ctx.Done():
		return false
	}
}

// reconnectDelay backs off from half a second to 15 seconds, with jitter.
func reconnectDelay(attempt int) time.Duration {
	d := 500 * time.Millisecond << min(attempt-1, 5)
	d = min(d, 15*time.Second)
	return d/2 + rand.N(d/2+1)
}
