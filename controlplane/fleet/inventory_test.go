package fleet

import (
	"testing"

	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

func TestMatchInventory(t *testing.T) {
	gpu := func(idx uint32, uuid, bus string) *fleetv1.Gpu {
		return &fleetv1.Gpu{Index: idx, Uuid: uuid, PciBusId: bus}
	}
	un := func(idx uint32) *nodev1.UnansweredGpu {
		return &nodev1.UnansweredGpu{Index: idx, Reason: "GPU is lost"}
	}
	tests := []struct {
		name       string
		missing    []*fleetv1.Gpu
		fresh      []*fleetv1.Gpu
		unanswered []*nodev1.UnansweredGpu
		replaced   map[string]string // missing uuid -> new uuid
		stands     map[string]uint32 // placeholder uuid -> index it stands for
		unplaced   []uint32
	}{
		{
			name:     "replaced-in-the-same-bus-slot",
			missing:  []*fleetv1.Gpu{gpu(1, "GPU-old", "0000:1B:00.0")},
			fresh:    []*fleetv1.Gpu{gpu(3, "GPU-new", "0000:1b:00.0")},
			replaced: map[string]string{"GPU-old": "GPU-new"},
		},
		{
			name:     "replaced-at-the-same-index-without-bus-ids",
			missing:  []*fleetv1.Gpu{gpu(1, "GPU-old", "")},
			fresh:    []*fleetv1.Gpu{gpu(1, "GPU-new", "")},
			replaced: map[string]string{"GPU-old": "GPU-new"},
		},
		{
			name:    "no-replacement-at-another-index",
			missing: []*fleetv1.Gpu{gpu(1, "GPU-old", "")},
			fresh:   []*fleetv1.Gpu{gpu(2, "GPU-new", "")},
		},
		{
			name: "a-new-gpu-in-another-missing-gpus-slot-is-not-this-ones",
			missing: []*fleetv1.Gpu{
				gpu(1, "GPU-a", ""),
				gpu(2, "GPU-b", "0000:2A:00.0"),
			},
			fresh:    []*fleetv1.Gpu{gpu(1, "GPU-new", "0000:2a:00.0")},
			replaced: map[string]string{"GPU-b": "GPU-new"},
		},
		{
			name:       "a-placeholder-stands-for-the-gpu-that-still-does-not-answer",
			missing:    []*fleetv1.Gpu{gpu(2, UnansweredPrefix+"2", "")},
			unanswered: []*nodev1.UnansweredGpu{un(2)},
			stands:     map[string]uint32{UnansweredPrefix + "2": 2},
		},
		{
			name:       "placeholders-keep-their-order-when-the-same-gpus-renumber",
			missing:    []*fleetv1.Gpu{gpu(5, UnansweredPrefix+"5", ""), gpu(6, UnansweredPrefix+"6", "")},
			unanswered: []*nodev1.UnansweredGpu{un(4), un(5)},
			stands:     map[string]uint32{UnansweredPrefix + "5": 4, UnansweredPrefix + "6": 5},
		},
		{
			name:     "a-placeholder-left-over-answers-again-as-a-new-gpu",
			missing:  []*fleetv1.Gpu{gpu(3, UnansweredPrefix+"3", "")},
			fresh:    []*fleetv1.Gpu{gpu(3, "GPU-back", "0000:3C:00.0")},
			replaced: map[string]string{UnansweredPrefix + "3": "GPU-back"},
		},
		{
			name:       "a-gpu-that-does-not-answer-and-has-no-placeholder",
			unanswered: []*nodev1.UnansweredGpu{un(0)},
			unplaced:   []uint32{0},
		},
		{
			name:       "a-known-gpu-that-stops-answering-needs-no-placeholder",
			missing:    []*fleetv1.Gpu{gpu(1, "GPU-known", "")},
			fresh:      []*fleetv1.Gpu{gpu(0, "GPU-other", "")},
			unanswered: []*nodev1.UnansweredGpu{un(1)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inv := matchInventory(tt.missing, tt.fresh, tt.unanswered)
			replaced := map[string]string{}
			for old, nw := range inv.replaced {
				replaced[old.GetUuid()] = nw.GetUuid()
			}
			if !equalMaps(replaced, tt.replaced) {
				t.Errorf("replaced %v, want %v", replaced, tt.replaced)
			}
			stands := map[string]uint32{}
			for g, u := range inv.stands {
				stands[g.GetUuid()] = u.GetIndex()
			}
			if !equalMaps(stands, tt.stands) {
				t.Errorf("stands %v, want %v", stands, tt.stands)
			}
			var unplaced []uint32
			for _, u := range inv.unplaced {
				unplaced = append(unplaced, u.GetIndex())
			}
			if len(unplaced) != len(tt.unplaced) || (len(unplaced) > 0 && unplaced[0] != tt.unplaced[0]) {
				t.Errorf("unplaced %v, want %v", unplaced, tt.unplaced)
			}
		})
	}
}

func equalMaps[K comparable, V comparable](a, b map[K]V) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestPlaceholderNamesAreUnique(t *testing.T) {
	names := map[string]bool{UnansweredPrefix + "1": true}
	u := &nodev1.UnansweredGpu{Index: 1}
	if got := placeholderName(u, names); got != UnansweredPrefix+"1-2" {
		t.Fatalf("got %q", got)
	}
	if got := placeholderName(u, names); got != UnansweredPrefix+"1-3" {
		t.Fatalf("second got %q", got)
	}
}
