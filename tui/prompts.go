package tui

import (
	"fmt"
	"slices"
	"strings"

	"charm.land/bubbles/v2/key"
	"charm.land/bubbles/v2/textinput"
	tea "charm.land/bubbletea/v2"
)

// filterMsg gives the active view its filter as typed so far.
type filterMsg struct{ text string }

// filterPrompt is the / prompt. The filter applies as it is typed.
type filterPrompt struct {
	d     *deps
	input textinput.Model
}

// newFilterPrompt edits a view's filter, which reads current now: each
// view keeps its own.
func newFilterPrompt(d *deps, current string) *filterPrompt {
	in := textinput.New()
	in.Prompt = "/"
	in.Placeholder = "text or label=value, space-separated"
	in.CharLimit = 256
	in.SetValue(current)
	in.Focus()
	in.CursorEnd()
	return &filterPrompt{d: d, input: in}
}

func (fp *filterPrompt) update(k tea.KeyPressMsg) (prompt, tea.Cmd) {
	switch {
	case key.Matches(k, fp.d.modal.Submit):
		return nil, nil
	case key.Matches(k, fp.d.modal.Dismiss):
		fp.d.send(filterMsg{})
		return nil, nil
	}
	fp.input, _ = fp.input.Update(k)
	fp.d.send(filterMsg{text: fp.input.Value()})
	return fp, nil
}

func (fp *filterPrompt) view(width int) string {
	fp.input.SetWidth(max(1, width-2))
	return fp.input.View()
}

// commandNames are the : prompt's commands, as help and hints list them:
// the listed views', then the rest. remedies adds those that act on the
// node on screen, for where there is one.
func commandNames(readOnly, remedies bool) []string {
	var names []string
	for _, s := range listedViews() {
		names = append(names, s.name)
	}
	if !readOnly {
		names = append(names, "provision")
	}
	if !readOnly && remedies {
		names = append(names, "reset-gpu", "reboot")
	}
	return append(names, "help", "q")
}

// palette is the : command prompt, with history. It lives as long as the
// console, so that the history does.
type palette struct {
	d       *deps
	input   textinput.Model
	history []string
	pos     int
	views   map[string]string // command → view name
}

func newPalette(d *deps, listed []viewSpec) *palette {
	p := &palette{d: d, views: map[string]string{}}
	for _, s := range listed {
		for _, c := range append([]string{s.name}, s.aliases...) {
			p.views[c] = s.name
		}
	}
	in := textinput.New()
	in.Prompt = ":"
	in.CharLimit = 64
	in.ShowSuggestions = true
	p.input = in
	p.rebind()
	return p
}

// rebind offers the commands the console allows now: a read-only one
// offers no action.
func (p *palette) rebind() {
	names := commandNames(p.d.readOnly(), true)
	p.input.Placeholder = strings.Join(names, " · ")
	// "quit" just before the last, "q", so that a typed q offers the
	// whole word.
	p.input.SetSuggestions(slices.Insert(names, len(names)-1, "quit"))
}

// open empties the prompt and returns it, to be shown.
func (p *palette) open() *palette {
	p.pos = len(p.history)
	p.input.SetValue("")
	p.input.Focus()
	return p
}

func (p *palette) update(k tea.KeyPressMsg) (prompt, tea.Cmd) {
	keys := &p.d.modal
	switch {
	case key.Matches(k, keys.Dismiss):
		p.input.Blur()
		return nil, nil
	case key.Matches(k, keys.Older):
		if p.pos > 0 {
			p.pos--
			p.input.SetValue(p.history[p.pos])
			p.input.CursorEnd()
		}
		return p, nil
	case key.Matches(k, keys.Newer):
		if p.pos < len(p.history)-1 {
			p.pos++
			p.input.SetValue(p.history[p.pos])
		} else {
			p.pos = len(p.history)
			p.input.SetValue("")
		}
		p.input.CursorEnd()
		return p, nil
	case key.Matches(k, keys.Submit):
		cmd := strings.TrimSpace(p.input.Value())
		p.input.Blur()
		if cmd == "" {
			return nil, nil
		}
		if len(p.history) == 0 || p.history[len(p.history)-1] != cmd {
			p.history = append(p.history, cmd)
		}
		p.run(cmd)
		return nil, nil
	}
	var c tea.Cmd
	p.input, c = p.input.Update(k)
	return p, c
}

// run sends what cmd asks for.
func (p *palette) run(cmd string) {
	if name, ok := p.views[cmd]; ok {
		p.d.send(showViewMsg{name: name})
		return
	}
	switch cmd {
	case "provision", "p":
		if p.d.readOnly() {
			p.d.refuse()
			return
		}
		p.d.send(openOverlayMsg{overlay: newProvisionDialog(p.d)})
	case "reset-gpu", "reboot":
		if p.d.readOnly() {
			p.d.refuse()
			return
		}
		p.d.send(remedyMsg{reboot: cmd == "reboot"})
	case "help", "h":
		p.d.send(showHelpMsg{})
	case "q", "quit", "q!":
		p.d.send(quitMsg{})
	default:
		p.d.send(statusLineMsg{text: fmt.Sprintf("unknown command %q (try %s)", cmd, strings.Join(commandNames(p.d.readOnly(), true), ", ")), err: true})
	}
}

func (p *palette) view(width int) string {
	p.input.SetWidth(max(1, width-2))
	return p.input.View()
}
