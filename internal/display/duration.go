package display

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// ParseDuration reads a duration as operators write it: Go's units (ns,
// us, ms, s, m, h) and days, d, for the spans where days are natural (a
// drain deadline, a token's lifetime): "9d", "1d12h", "1.5d", "90m".
func ParseDuration(s string) (time.Duration, error) {
	d, err := parseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration such as 90s, 30m, 2h or 9d: %w", s, err)
	}
	return d, nil
}

func parseDuration(s string) (time.Duration, error) {
	rest := strings.TrimSpace(s)
	neg := strings.HasPrefix(rest, "-")
	rest = strings.TrimLeft(rest, "+-")
	if rest == "" {
		return 0, errors.New("it is empty")
	}
	if rest == "0" {
		return 0, nil
	}
	var total time.Duration
	for rest != "" {
		num := strings.TrimLeft(rest, "0123456789.")
		number := rest[:len(rest)-len(num)]
		end := strings.IndexAny(num, "0123456789.")
		if end < 0 {
			end = len(num)
		}
		unit := num[:end]
		rest = num[end:]
		if number == "" {
			return 0, fmt.Errorf("%q has no number before it", unit)
		}
		var part time.Duration
		switch unit {
		case "":
			return 0, fmt.Errorf("%s has no unit (ms, s, m, h or d)", number)
		case "d":
			days, err := strconv.ParseFloat(number, 64)
			if err != nil {
				return 0, fmt.Errorf("%sd is not a number of days", number)
			}
			if days*24*float64(time.Hour) >= math.MaxInt64 {
				return 0, errors.New("it is too long")
			}
			part = time.Duration(days * 24 * float64(time.Hour))
		case "ns", "us", "µs", "μs", "ms", "s", "m", "h":
			var err error
			if part, err = time.ParseDuration(number + unit); err != nil {
				return 0, fmt.Errorf("%s%s is too long or not a number", number, unit)
			}
		default:
			return 0, fmt.Errorf("%q is not a unit (ms, s, m, h or d)", unit)
		}
		if total > math.MaxInt64-part {
			return 0, errors.New("it is too long")
		}
		total += part
	}
	if neg {
		return -total, nil
	}
	return total, nil
}
