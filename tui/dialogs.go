package tui

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	tea "charm.land/bubbletea/v2"

	"github.com/navarch/navarch/internal/display"
)

// The dialogs ask for what an action needs. Where the control plane has a
// bound or a default for a value, GetFleetStatus says what it is; until it
// has, the dialogs leave the judging to the control plane, whose refusal
// shows in the status line.

// serverDefault is what a dialog says of a value it leaves to the control
// plane.
const serverDefault = "the control plane's default"

// drainDialog collects a drain's reason, deadline and force, then asks for
// confirmation.
type drainDialog struct {
	*form
	targets []string
	what    string
}

func newDrainDialog(d *deps, targets []string, what string) *drainDialog {
	f := newForm(d, "Drain "+what)
	f.addInput("Reason", "", "why (shown to other operators)")
	// Emptied, the deadline is the control plane's to choose.
	deadline := ""
	if def := d.limits.GetDefaultDrainDeadline().AsDuration(); def > 0 {
		deadline = display.Duration(def)
	}
	f.addInput("Deadline", deadline, serverDefault)
	f.addToggle("Force at deadline", false)
	return &drainDialog{form: f, targets: targets, what: what}
}

func (dd *drainDialog) update(k tea.KeyPressMsg) (overlay, tea.Cmd) {
	next, cmd, submitted := dd.step(dd, k, "drain")
	if !submitted {
		return next, cmd
	}
	deadline, ok := dd.deadline()
	if !ok {
		dd.setFocus(1)
		return dd, nil
	}
	force := dd.toggle[2]
	forceText := "jobs still running then are left alone"
	if force {
		forceText = "jobs still running then get TERM, then KILL"
	}
	when := serverDefault + " deadline"
	if deadline > 0 {
		when = "deadline " + deadline.String()
	}
	q := fmt.Sprintf("Drain %s? No new work lands; %s; %s.", dd.what, when, forceText)
	return newConfirm(dd.d, q, drainAction(dd.d, dd.targets, dd.value(0), deadline, force)), nil
}

// deadline reads the deadline field: 0 when it is empty, for the control
// plane's default. A deadline past the control plane's bound is refused
// here once the bound is known.
func (dd *drainDialog) deadline() (time.Duration, bool) {
	text := dd.value(1)
	if text == "" {
		return 0, true
	}
	deadline, err := display.ParseDuration(text)
	limit := dd.d.limits.GetMaxDrainDeadline().AsDuration()
	switch {
	case limit > 0 && (err != nil || deadline <= 0 || deadline > limit):
		dd.err = fmt.Sprintf("deadline %q is not a duration between 1s and %s, such as 30m or 2h", text, display.Duration(limit))
	case err != nil || deadline <= 0:
		dd.err = fmt.Sprintf("deadline %q is not a positive duration, such as 30m or 2h", text)
	default:
		return deadline, true
	}
	return 0, false
}

func (dd *drainDialog) view(width int) string {
	return dd.form.view(width, "tab next field · space toggles · enter continue · esc cancel")
}

// terminateDialog collects a termination's reason, drain timeout and
// force, as `navarch terminate` takes them, then asks for confirmation.
type terminateDialog struct {
	*form
	targets []string
	what    string
}

// The terminate form's fields, in order.
const (
	terminateReason = iota
	terminateTimeout
	terminateForce
)

func newTerminateDialog(d *deps, targets []string, what string) *terminateDialog {
	f := newForm(d, "Terminate "+what)
	f.note = "Drained first, for at most the drain timeout (jobs get TERM, then KILL), then stopped; forced, stopped at once without a drain."
	f.addInput("Reason", "", "why (shown to other operators)")
	// Emptied, the drain timeout is the control plane's to choose.
	timeout := ""
	if def := d.limits.GetDefaultTerminateDrainTimeout().AsDuration(); def > 0 {
		timeout = display.Duration(def)
	}
	f.addInput("Drain timeout", timeout, serverDefault)
	f.addToggle("Force (no drain)", false)
	return &terminateDialog{form: f, targets: targets, what: what}
}

func (td *terminateDialog) update(k tea.KeyPressMsg) (overlay, tea.Cmd) {
	next, cmd, submitted := td.step(td, k, "termination")
	if !submitted {
		return next, cmd
	}
	force := td.toggle[terminateForce]
	var timeout time.Duration
	if !force {
		// A forced termination skips the drain: its timeout is not read.
		var ok bool
		if timeout, ok = td.drainTimeout(); !ok {
			td.setFocus(terminateTimeout)
			return td, nil
		}
	}
	q := terminateQuestion(td.what, len(td.targets) > 1, timeout, force)
	return newConfirm(td.d, q, terminateAction(td.d, td.targets, td.value(terminateReason), timeout, force)), nil
}

// drainTimeout reads the drain timeout field: 0 when it is empty, for the
// control plane's default. Once the control plane has said its bounds, a
// timeout outside them is refused here.
func (td *terminateDialog) drainTimeout() (time.Duration, bool) {
	text := td.value(terminateTimeout)
	if text == "" {
		return 0, true
	}
	timeout, err := display.ParseDuration(text)
	least := td.d.limits.GetMinTerminateDrainTimeout().AsDuration()
	most := td.d.limits.GetMaxDrainDeadline().AsDuration()
	switch {
	case most > 0 && (err != nil || timeout <= 0 || timeout < least || timeout > most):
		td.err = fmt.Sprintf("drain timeout %q is not a duration between %s and %s, such as 10m or 1h", text, display.Duration(max(least, time.Second)), display.Duration(most))
	case err != nil || timeout <= 0:
		td.err = fmt.Sprintf("drain timeout %q is not a positive duration, such as 10m or 1h", text)
	default:
		return timeout, true
	}
	return 0, false
}

func (td *terminateDialog) view(width int) string {
	return td.form.view(width, "tab next field · space toggles · enter continue · esc cancel")
}

// terminateQuestion is the confirmation of a termination: drained first
// for timeout (0: the control plane's default), or, forced, stopped at
// once.
func terminateQuestion(what string, bulk bool, timeout time.Duration, force bool) string {
	if force {
		how := "It is not drained: its jobs are killed as it stops."
		if bulk {
			how = "None is drained: their jobs are killed as they stop."
		}
		return fmt.Sprintf("Terminate %s now? %s", what, how)
	}
	how := "It is drained first (jobs get TERM, then KILL, after %s), then stopped."
	if bulk {
		how = "Each is drained first (jobs get TERM, then KILL, after %s), then stopped."
	}
	after := "the control plane's drain timeout"
	if timeout > 0 {
		after = display.Duration(timeout)
	}
	return fmt.Sprintf("Terminate %s? "+how, what, after)
}

// provisionDialog collects a provisioning request.
type provisionDialog struct {
	*form
	providers []string
}

func newProvisionDialog(d *deps) *provisionDialog {
	f := newForm(d, "Provision nodes")
	f.addInput("Provider", defaultProvider(d.providers), "required")
	count := "how many"
	if most := d.limits.GetMaxProvisionCount(); most > 0 {
		count = fmt.Sprintf("1–%d", most)
	}
	f.addInput("Count", "2", count)
	gpus := "0 for the provider's default"
	if most := d.limits.GetMaxGpusPerNode(); most > 0 {
		gpus = fmt.Sprintf("0–%d (0: provider's default)", most)
	}
	f.addInput("GPUs per node", "8", gpus)
	f.addInput("Labels", "", "optional: pool=a,zone=b")
	return &provisionDialog{form: f, providers: d.providers}
}

// defaultProvider is the provider the form starts with: the only one, else
// "local" when the control plane has it, else the first it lists. Until
// GetFleetStatus has listed them there is none: the operator names it.
func defaultProvider(providers []string) string {
	switch {
	case len(providers) == 0:
		return ""
	case slices.Contains(providers, "local"):
		return "local"
	}
	return providers[0]
}

func (pd *provisionDialog) update(k tea.KeyPressMsg) (overlay, tea.Cmd) {
	next, cmd, submitted := pd.step(pd, k, "provisioning")
	if !submitted {
		return next, cmd
	}
	provider := pd.value(0)
	if provider == "" {
		pd.err = "the provider is required"
		pd.setFocus(0)
		return pd, nil
	}
	count, ok := pd.count()
	if !ok {
		pd.setFocus(1)
		return pd, nil
	}
	gpus, ok := pd.gpus()
	if !ok {
		pd.setFocus(2)
		return pd, nil
	}
	labels := map[string]string{}
	for _, part := range strings.Split(pd.value(3), ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok || strings.TrimSpace(k) == "" {
			pd.err = fmt.Sprintf("label %q is not key=value", part)
			pd.setFocus(3)
			return pd, nil
		}
		labels[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	what := plural(count, "node")
	if gpus > 0 {
		what += " with " + plural(gpus, "GPU") + " each"
	}
	if len(labels) > 0 {
		what += ", labelled " + display.Labels(labels)
	}
	q := fmt.Sprintf("Provision %s through %s?", what, provider)
	return newConfirm(pd.d, q, provisionAction(pd.d, provider, uint32(count), uint32(gpus), labels)), nil
}

// count reads the count field, bounded by the control plane's limit once
// it is known.
func (pd *provisionDialog) count() (uint64, bool) {
	count, err := strconv.ParseUint(pd.value(1), 10, 32)
	most := uint64(pd.d.limits.GetMaxProvisionCount())
	switch {
	case most > 0 && (err != nil || count < 1 || count > most):
		pd.err = fmt.Sprintf("count %q is not a whole number from 1 to %d", pd.value(1), most)
	case err != nil:
		pd.err = fmt.Sprintf("count %q is not a whole number", pd.value(1))
	default:
		return count, true
	}
	return 0, false
}

// gpus reads the GPUs per node field, bounded by the control plane's
// limit once it is known.
func (pd *provisionDialog) gpus() (uint64, bool) {
	gpus, err := strconv.ParseUint(pd.value(2), 10, 32)
	most := uint64(pd.d.limits.GetMaxGpusPerNode())
	switch {
	case most > 0 && (err != nil || gpus > most):
		pd.err = fmt.Sprintf("GPUs per node %q is not a whole number from 0 to %d", pd.value(2), most)
	case err != nil:
		pd.err = fmt.Sprintf("GPUs per node %q is not a whole number", pd.value(2))
	default:
		return gpus, true
	}
	return 0, false
}

func (pd *provisionDialog) view(width int) string {
	hint := "tab next field · enter continue · esc cancel"
	if len(pd.providers) > 0 {
		hint = "providers: " + strings.Join(pd.providers, ", ") + "\n" + hint
	} else {
		hint = "providers: not yet listed by the control plane; name one\n" + hint
	}
	return pd.form.view(width, hint)
}
