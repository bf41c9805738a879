package storetest

import (
	"bytes"
	"crypto/sha256"
	"slices"
	"testing"
	"time"

	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	"github.com/navarch/navarch/store"
)

const (
	viewer   = controlplanev1.Role_ROLE_VIEWER
	operator = controlplanev1.Role_ROLE_OPERATOR
	admin    = controlplanev1.Role_ROLE_ADMIN
)

func tokenNames(st *store.State) []string {
	var out []string
	for _, tok := range st.Tokens {
		out = append(out, tok.Name)
	}
	return out
}

func hash(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// checkTokens fails t unless got holds want's tokens in want's order, every
// field equal and every time in UTC.
func checkTokens(t *testing.T, when string, got, want []*store.Token) {
	t.Helper()
	checkOrder(t, when, "tokens", got, want, func(tok *store.Token) string { return tok.Name })
	for i, g := range got {
		w := want[i]
		if g.Role != w.Role || !bytes.Equal(g.Hash, w.Hash) {
			t.Errorf("%s: token %s has role %v, hash %x; want %v, %x", when, g.Name, g.Role, g.Hash, w.Role, w.Hash)
		}
		if g.MaxUses != w.MaxUses || g.Used != w.Used {
			t.Errorf("%s: token %s used %d of %d times, want %d of %d", when, g.Name, g.Used, g.MaxUses, w.Used, w.MaxUses)
		}
		if g.NodeID != w.NodeID {
			t.Errorf("%s: token %s is for node %q, want %q", when, g.Name, g.NodeID, w.NodeID)
		}
		for _, tm := range []struct {
			field     string
			got, want time.Time
		}{
			{"created", g.CreatedAt, w.CreatedAt},
			{"expires", g.ExpiresAt, w.ExpiresAt},
			{"revoked", g.RevokedAt, w.RevokedAt},
		} {
			if !tm.got.Equal(tm.want) || tm.got.IsZero() != tm.want.IsZero() {
				t.Errorf("%s: token %s %s at %v, want %v", when, g.Name, tm.field, tm.got, tm.want)
			}
			if tm.got.Location() != time.UTC {
				t.Errorf("%s: token %s %s at %v, not in UTC", when, g.Name, tm.field, tm.got)
			}
		}
	}
}

// testTokensSurviveReopen: tokens written on their own are read back by the
// next store opened on the same data with every field as written: times to
// the nanosecond, whatever zone they were given in, zero times zero, and
// the use limit and count, zero or not.
func testTokensSurviveReopen(t *testing.T, open Opener) {
	b := newBackend(t, open, store.Limits{})
	s := b.start()
	cet := time.FixedZone("CET", 3600)
	tokens := []*store.Token{
		{Name: "boot-1", Hash: hash("boot-secret"), CreatedAt: time.Now(), MaxUses: 1, NodeID: "train-0a1b2c3d"},
		{Name: "ci", Role: viewer, Hash: hash("ci-secret"), CreatedAt: time.Now()},
		{Name: "join", Hash: hash("join-secret"), CreatedAt: time.Now(), MaxUses: 3, Used: 2},
		{Name: "join-unlimited", Hash: hash("join-unlimited-secret"), CreatedAt: time.Now(), Used: 41},
		{
			Name:      "root",
			Role:      admin,
			Hash:      hash("root-secret"),
			CreatedAt: time.Date(2025, 3, 1, 12, 0, 0, 123456789, cet),
			ExpiresAt: time.Date(2026, 3, 1, 12, 0, 0, 1, cet),
			RevokedAt: time.Date(2025, 6, 30, 23, 59, 59, 999999999, time.UTC),
		},
	}
	apply(t, s, store.Write{Tokens: tokens})
	checkTokens(t, "before reopen", load(t, s).Tokens, tokens)
	s = b.restart(s)
	checkTokens(t, "after reopen", load(t, s).Tokens, tokens)
}

// testTokensReplacedAndOrdered: Load returns tokens ordered by name, and a
// later write replaces a token of the same name whole, a time or a use
// count it leaves zero included, and leaves the others as they were.
func testTokensReplacedAndOrdered(t *testing.T, open Opener) {
	b := newBackend(t, open, store.Limits{})
	s := b.start()
	created := time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)
	a := &store.Token{Name: "a", Role: viewer, Hash: hash("a"), CreatedAt: created}
	bb := &store.Token{Name: "b", Role: admin, Hash: hash("b"), CreatedAt: created}
	ops10 := &store.Token{Name: "ops-10", Role: operator, Hash: hash("ops-10"), CreatedAt: created}
	ops9 := &store.Token{Name: "ops-9", Role: operator, Hash: hash("ops-9"), CreatedAt: created, ExpiresAt: created.Add(time.Hour), MaxUses: 5, Used: 1}
	apply(t, s, store.Write{Tokens: []*store.Token{ops9, bb, ops10, a}})
	checkTokens(t, "first write", load(t, s).Tokens, []*store.Token{a, bb, ops10, ops9})

	replaced := &store.Token{Name: "ops-9", Role: viewer, Hash: hash("ops-9 again"), CreatedAt: created.Add(time.Minute), RevokedAt: created.Add(2 * time.Minute)}
	apply(t, s, store.Write{Tokens: []*store.Token{replaced}})
	want := []*store.Token{a, bb, ops10, replaced}
	// A token deleted goes, one written and deleted in the same write too,
	// and the others stay.
	gone := &store.Token{Name: "gone", Role: viewer, Hash: hash("gone"), CreatedAt: created}
	apply(t, s, store.Write{Tokens: []*store.Token{gone}})
	apply(t, s, store.Write{Tokens: []*store.Token{{Name: "brief", Role: viewer, Hash: hash("brief"), CreatedAt: created}}, DeleteTokens: []string{"gone", "brief"}})
	checkTokens(t, "after deleting", load(t, s).Tokens, want)
	checkTokens(t, "after replacing", load(t, s).Tokens, want)
	checkTokens(t, "after reopen", load(t, b.restart(s)).Tokens, want)
}

// checkOrder fails t at once unless got and want name the same records,
// by name, in the same order.
func checkOrder[T any](t *testing.T, when, what string, got, want []T, name func(T) string) {
	t.Helper()
	names := func(rs []T) []string {
		out := make([]string, 0, len(rs))
		for _, r := range rs {
			out = append(out, name(r))
		}
		return out
	}
	if g, w := names(got), names(want); !slices.Equal(g, w) {
		t.Fatalf("%s: %s %v, want %v", when, what, g, w)
	}
}
