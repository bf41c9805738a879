package agent

import (
	"sync"

	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// eventBuffer holds health events until the control plane has them. It is
// bounded: when full, the oldest event goes and the drop counter says how
// many went, so an outage never grows the agent's memory.
type eventBuffer struct {
	mu      sync.Mutex
	events  []*fleetv1.HealthEvent
	cap     int
	dropped uint64
	ready   chan struct{} // has a value while events wait
}

func newEventBuffer(capacity int) *eventBuffer {
	return &eventBuffer{cap: capacity, ready: make(chan struct{}, 1)}
}

// push adds events, dropping the oldest past the capacity.
func (b *eventBuffer) push(evs ...*fleetv1.HealthEvent) {
	if len(evs) == 0 {
		return
	}
	b.mu.Lock()
	b.events = append(b.events, evs...)
	if over := len(b.events) - b.cap; over > 0 {
		b.dropped += uint64(over)
		clear(b.events[:over])
		b.events = append(b.events[:0:0], b.events[over:]...)
	}
	b.mu.Unlock()
	select {
	case b.ready <- struct{}{}:
	default:
	}
}

// peek returns up to n of the oldest events without removing them.
func (b *eventBuffer) peek(n int) []*fleetv1.HealthEvent {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]*fleetv1.HealthEvent(nil), b.events[:min(n, len(b.events))]...)
}

// remove drops the given events once delivered. Events dropped for space
// in the meantime are not dropped twice.
func (b *eventBuffer) remove(sent []*fleetv1.HealthEvent) {
	if len(sent) == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	gone := make(map[*fleetv1.HealthEvent]bool, len(sent))
	for _, e := range sent {
		gone[e] = true
	}
	kept := b.events[:0]
	for _, e := range b.events {
		if !gone[e] {
			kept = append(kept, e)
		}
	}
	clear(b.events[len(kept):])
	b.events = kept
	if len(b.events) > 0 {
		select {
		case b.ready <- struct{}{}:
		default:
		}
	}
}

func (b *eventBuffer) len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.events)
}

func (b *eventBuffer) droppedCount() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.dropped
}
