package store

import (
	"fmt"
	"strconv"
	"strings"
)

// FormatSeq renders a sequence number as a command or event id.
func FormatSeq(prefix string, seq uint64) string {
	return fmt.Sprintf("%s-%d", prefix, seq)
}

// ParseSeq reads the sequence number back from an id made by FormatSeq.
func ParseSeq(id string) (uint64, error) {
	i := strings.LastIndexByte(id, '-')
	if i < 0 {
		return 0, fmt.Errorf("id %q has no sequence number", id)
	}
	seq, err := strconv.ParseUint(id[i+1:], 10, 64)
	if err != nil || seq == 0 {
		return 0, fmt.Errorf("id %q has no sequence number", id)
	}
	return seq, nil
}
