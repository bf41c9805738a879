package tui

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"charm.land/bubbles/v2/key"
	"charm.land/bubbles/v2/textinput"
	tea "charm.land/bubbletea/v2"

	"github.com/navarch/navarch/internal/display"
)

// dialog is a modal: it takes every key until it closes by returning nil.
type dialog interface {
	update(k tea.KeyPressMsg) (dialog, tea.Cmd)
	view(width int) string
}

// confirm asks a yes/no question before an action.
type confirm struct {
	d        *deps
	question string
	act      tea.Cmd
}

func newConfirm(d *deps, question string, act tea.Cmd) *confirm {
	return &confirm{d: d, question: question, act: act}
}

func (c *confirm) update(k tea.KeyPressMsg) (dialog, tea.Cmd) {
	switch {
	case key.Matches(k, c.d.keys.Confirm):
		return nil, c.act
	case key.Matches(k, c.d.keys.Cancel):
		return nil, func() tea.Msg { return actionDoneMsg{text: "cancelled"} }
	}
	return c, nil
}

func (c *confirm) view(width int) string {
	t := c.d.theme
	body := t.Bold.Render(wrap(c.question, min(60, width-6))) + "\n\n" +
		t.Key.Render("y") + " " + t.Desc.Render("confirm") + "   " + t.Key.Render("n/esc") + " " + t.Desc.Render("cancel")
	return t.Box.Render(body)
}

// wrap breaks text into lines of at most width cells at spaces.
func wrap(s string, width int) string {
	if width < 10 {
		width = 10
	}
	var lines []string
	line := ""
	for _, w := range strings.Fields(s) {
		if line != "" && len(line)+1+len(w) > width {
			lines = append(lines, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += w
	}
	return strings.Join(append(lines, line), "\n")
}

// form is a small stack of labelled fields: text inputs and toggles.
type form struct {
	d      *deps
	title  string
	labels []string
	inputs []textinput.Model
	toggle map[int]bool // fields that are yes/no toggles, by index
	focus  int
	err    string
}

func newForm(d *deps, title string) *form {
	return &form{d: d, title: title, toggle: map[int]bool{}}
}

func (f *form) addInput(label, value, placeholder string) {
	in := textinput.New()
	in.Prompt = ""
	in.Placeholder = placeholder
	in.SetValue(value)
	in.SetWidth(30)
	in.CharLimit = 256
	if len(f.inputs) == 0 {
		in.Focus()
	}
	f.labels = append(f.labels, label)
	f.inputs = append(f.inputs, in)
}

func (f *form) addToggle(label string, on bool) {
	f.toggle[len(f.inputs)] = on
	f.labels = append(f.labels, label)
	f.inputs = append(f.inputs, textinput.New())
}

func (f *form) value(i int) string { return strings.TrimSpace(f.inputs[i].Value()) }

// handle moves between fields and edits the focused one; it reports
// whether the form was submitted.
func (f *form) handle(k tea.KeyPressMsg) (submitted bool, cmd tea.Cmd) {
	keys := &f.d.keys
	switch {
	case key.Matches(k, keys.Submit):
		// Enter submits from any field; the fields have defaults, and a
		// confirmation follows.
		return true, nil
	case key.Matches(k, keys.Next):
		f.setFocus((f.focus + 1) % len(f.inputs))
		return false, nil
	case key.Matches(k, keys.Prev):
		f.setFocus((f.focus + len(f.inputs) - 1) % len(f.inputs))
		return false, nil
	}
	if on, isToggle := f.toggle[f.focus]; isToggle {
		switch {
		case key.Matches(k, keys.Yes):
			f.toggle[f.focus] = true
		case key.Matches(k, keys.No):
			f.toggle[f.focus] = false
		case key.Matches(k, keys.Toggle):
			f.toggle[f.focus] = !on
		}
		return false, nil
	}
	f.inputs[f.focus], cmd = f.inputs[f.focus].Update(k)
	return false, cmd
}

func (f *form) setFocus(i int) {
	f.inputs[f.focus].Blur()
	f.focus = i
	if _, isToggle := f.toggle[i]; !isToggle {
		f.inputs[i].Focus()
	}
}

func (f *form) view(width int, hint string) string {
	t := f.d.theme
	var lines []string
	lines = append(lines, t.Title.Render(f.title), "")
	for i, label := range f.labels {
		marker := "  "
		if i == f.focus {
			marker = t.Key.Render("› ")
		}
		val := ""
		if on, isToggle := f.toggle[i]; isToggle {
			val = "[ ] no"
			if on {
				val = "[x] yes"
			}
		} else {
			val = f.inputs[i].View()
		}
		lines = append(lines, marker+t.Bold.Render(padRight(label, 18))+val)
	}
	if f.err != "" {
		lines = append(lines, "", t.StatusErr.Render(wrap(f.err, min(56, width-6))))
	}
	lines = append(lines, "", t.Muted.Render(hint))
	return t.Box.Render(strings.Join(lines, "\n"))
}

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
	f.addInput("Deadline", "1h", "how long GPU jobs may run, e.g. 30m")
	f.addToggle("Force at deadline", false)
	return &drainDialog{form: f, targets: targets, what: what}
}

func (dd *drainDialog) update(k tea.KeyPressMsg) (dialog, tea.Cmd) {
	if key.Matches(k, dd.d.keys.Dismiss) {
		return nil, func() tea.Msg { return actionDoneMsg{text: "drain cancelled"} }
	}
	submitted, cmd := dd.handle(k)
	if !submitted {
		return dd, cmd
	}
	deadline, err := time.ParseDuration(dd.value(1))
	if err != nil || deadline <= 0 || deadline > 7*24*time.Hour {
		dd.err = fmt.Sprintf("deadline %q is not a duration between 1s and 168h, such as 30m or 2h", dd.value(1))
		dd.setFocus(1)
		return dd, nil
	}
	force := dd.toggle[2]
	forceText := "jobs still running then are left alone"
	if force {
		forceText = "jobs still running then get TERM, then KILL"
	}
	q := fmt.Sprintf("Drain %s? No new work lands; deadline %s; %s.", dd.what, deadline, forceText)
	return newConfirm(dd.d, q, drainAction(dd.d, dd.targets, dd.value(0), deadline, force)), nil
}

func (dd *drainDialog) view(width int) string {
	return dd.form.view(width, "tab next field · space toggles · enter continue · esc cancel")
}

// provisionDialog collects a provisioning request.
type provisionDialog struct {
	*form
	providers []string
}

func newProvisionDialog(d *deps, providers []string) *provisionDialog {
	f := newForm(d, "Provision nodes")
	def := "local"
	if len(providers) > 0 {
		def = providers[0]
	}
	f.addInput("Provider", def, strings.Join(providers, ", "))
	f.addInput("Count", "2", "1–1000")
	f.addInput("GPUs per node", "8", "1–64, 0 for the provider's default")
	f.addInput("Labels", "", "optional: pool=a,zone=b")
	return &provisionDialog{form: f, providers: providers}
}

func (pd *provisionDialog) update(k tea.KeyPressMsg) (dialog, tea.Cmd) {
	if key.Matches(k, pd.d.keys.Dismiss) {
		return nil, func() tea.Msg { return actionDoneMsg{text: "provisioning cancelled"} }
	}
	submitted, cmd := pd.handle(k)
	if !submitted {
		return pd, cmd
	}
	provider := pd.value(0)
	count, err := strconv.Atoi(pd.value(1))
	if err != nil || count < 1 || count > 1000 {
		pd.err = fmt.Sprintf("count %q is not a whole number from 1 to 1000", pd.value(1))
		pd.setFocus(1)
		return pd, nil
	}
	gpus, err := strconv.Atoi(pd.value(2))
	if err != nil || gpus < 0 || gpus > 64 {
		pd.err = fmt.Sprintf("GPUs per node %q is not a whole number from 0 to 64", pd.value(2))
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
	what := fmt.Sprintf("%d node(s)", count)
	if gpus > 0 {
		what += fmt.Sprintf(" with %d GPUs each", gpus)
	}
	if len(labels) > 0 {
		what += ", labelled " + display.Labels(labels)
	}
	q := fmt.Sprintf("Provision %s through %s?", what, provider)
	return newConfirm(pd.d, q, provisionAction(pd.d, provider, count, gpus, labels)), nil
}

func (pd *provisionDialog) view(width int) string {
	hint := "tab next field · enter continue · esc cancel"
	if len(pd.providers) > 0 {
		hint = "providers: " + strings.Join(pd.providers, ", ") + "\n" + hint
	}
	return pd.form.view(width, hint)
}

// filterInput is the / prompt. The filter applies as it is typed.
type filterInput struct {
	d      *deps
	input  textinput.Model
	active bool
	target viewID
}

func newFilterInput(d *deps) *filterInput {
	in := textinput.New()
	in.Prompt = "/"
	in.Placeholder = "text or label=value, space-separated"
	in.CharLimit = 256
	return &filterInput{d: d, input: in}
}

// open starts editing target's filter, which reads current now: each
// view keeps its own.
func (fi *filterInput) open(target viewID, current string) {
	fi.active = true
	fi.target = target
	fi.input.SetValue(current)
	fi.input.Focus()
	fi.input.CursorEnd()
}

func (fi *filterInput) update(k tea.KeyPressMsg, m *Model) {
	switch {
	case key.Matches(k, fi.d.keys.Submit):
		fi.active = false
		fi.input.Blur()
		return
	case key.Matches(k, fi.d.keys.Dismiss):
		fi.active = false
		fi.input.Blur()
		fi.input.SetValue("")
	default:
		fi.input, _ = fi.input.Update(k)
	}
	if fi.target == viewEvents {
		m.events.setFilter(fi.input.Value())
		return
	}
	m.fleet.setFilter(fi.input.Value())
	m.table.keepCursor()
}

func (fi *filterInput) view() string { return fi.input.View() }

// palette is the : command line, with history.
type palette struct {
	d       *deps
	input   textinput.Model
	active  bool
	history []string
	pos     int
}

// paletteCommands are the commands the palette knows, for completion.
var paletteCommands = []string{"nodes", "events", "provision", "help", "quit", "q"}

func newPalette(d *deps) *palette {
	in := textinput.New()
	in.Prompt = ":"
	in.Placeholder = "nodes · events · provision · help · q"
	in.CharLimit = 64
	in.ShowSuggestions = true
	in.SetSuggestions(paletteCommands)
	return &palette{d: d, input: in}
}

func (p *palette) open() {
	p.active = true
	p.pos = len(p.history)
	p.input.SetValue("")
	p.input.Focus()
}

func (p *palette) update(k tea.KeyPressMsg, m *Model) tea.Cmd {
	keys := &p.d.keys
	switch {
	case key.Matches(k, keys.Dismiss):
		p.active = false
		p.input.Blur()
		return nil
	case key.Matches(k, keys.Older):
		if p.pos > 0 {
			p.pos--
			p.input.SetValue(p.history[p.pos])
			p.input.CursorEnd()
		}
		return nil
	case key.Matches(k, keys.Newer):
		if p.pos < len(p.history)-1 {
			p.pos++
			p.input.SetValue(p.history[p.pos])
		} else {
			p.pos = len(p.history)
			p.input.SetValue("")
		}
		p.input.CursorEnd()
		return nil
	case key.Matches(k, keys.Submit):
		cmd := strings.TrimSpace(p.input.Value())
		p.active = false
		p.input.Blur()
		if cmd == "" {
			return nil
		}
		if len(p.history) == 0 || p.history[len(p.history)-1] != cmd {
			p.history = append(p.history, cmd)
		}
		return p.run(cmd, m)
	}
	var c tea.Cmd
	p.input, c = p.input.Update(k)
	return c
}

func (p *palette) run(cmd string, m *Model) tea.Cmd {
	switch cmd {
	case "nodes", "fleet", "n":
		m.show(viewFleet)
	case "events", "e":
		m.show(viewEvents)
	case "provision", "p":
		if m.d.readOnly {
			m.setStatus("read-only: actions are disabled", true)
			return nil
		}
		m.dialog = newProvisionDialog(m.d, m.providers)
	case "help", "h":
		m.help = true
	case "q", "quit", "q!":
		m.quitting = true
	default:
		m.setStatus(fmt.Sprintf("unknown command %q (try nodes, events, provision, help, q)", cmd), true)
	}
	return nil
}

func (p *palette) view() string { return p.input.View() }
