package badgerstore

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/navarch/navarch/store"
)

// breakerRecord is the breaker state as stored under b/breaker: JSON with
// named fields, times as RFC 3339 in UTC with nanoseconds, a zero trip
// time and a zero count left out.
type breakerRecord struct {
	Recent     []string `json:"recent,omitempty"`
	TrippedAt  string   `json:"tripped_at,omitempty"`
	Suppressed uint32   `json:"suppressed,omitempty"`
}

func putBreaker(txn *badger.Txn, b *store.BreakerState) error {
	r := breakerRecord{Suppressed: b.Suppressed}
	format := func(t time.Time) (string, error) {
		// RFC 3339 has four-digit years; refusing the rest here keeps a
		// state that could not be read back out of the store.
		if y := t.UTC().Year(); y < 1 || y > 9999 {
			return "", fmt.Errorf("breaker state: time %v outside the years 1 to 9999", t)
		}
		return t.UTC().Format(time.RFC3339Nano), nil
	}
	for _, t := range b.Recent {
		s, err := format(t)
		if err != nil {
			return err
		}
		r.Recent = append(r.Recent, s)
	}
	if !b.TrippedAt.IsZero() {
		s, err := format(b.TrippedAt)
		if err != nil {
			return err
		}
		r.TrippedAt = s
	}
	v, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode breaker state: %w", err)
	}
	return txn.Set([]byte(keyBreaker), v)
}

func decodeBreaker(v []byte) (*store.BreakerState, error) {
	var r breakerRecord
	if err := json.Unmarshal(v, &r); err != nil {
		return nil, fmt.Errorf("decode breaker state: %w", err)
	}
	b := &store.BreakerState{Suppressed: r.Suppressed}
	parse := func(s string) (time.Time, error) {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return time.Time{}, fmt.Errorf("decode breaker state: %w", err)
		}
		return t.UTC(), nil
	}
	for _, s := range r.Recent {
		t, err := parse(s)
		if err != nil {
			return nil, err
		}
		b.Recent = append(b.Recent, t)
	}
	if r.TrippedAt != "" {
		t, err := parse(r.TrippedAt)
		if err != nil {
			return nil, err
		}
		b.TrippedAt = t
	}
	return b, nil
}
