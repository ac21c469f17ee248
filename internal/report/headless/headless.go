// Package headless loads HTML pages in a headless Chromium: it reports the console errors
// a page caused and the rendered size of an element, and takes full-page screenshots. The
// report's browser tests use it, and so can anything that needs a picture of a report.
//
// Chromium is started with every background service off (no network is reached besides the
// page's own URL) and a fresh profile directory that is removed afterwards.
package headless

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
)

// ErrNoBrowser means no Chromium binary was found.
var ErrNoBrowser = errors.New("headless: no chromium binary found (install Debian's chromium, or set CHROMIUM to its path)")

// candidates are the binaries Find looks for on PATH, in order.
var candidates = []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"}

// Find returns the path of the Chromium to use: $CHROMIUM when set, else the first of the
// usual binary names on PATH, else /usr/bin/chromium. It returns ErrNoBrowser when none
// exists.
func Find() (string, error) {
	if p := os.Getenv("CHROMIUM"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%w: CHROMIUM=%s: %v", ErrNoBrowser, p, err)
		}
		return p, nil
	}
	for _, c := range candidates {
		if p, err := exec.LookPath(c); err == nil {
			return p, nil
		}
	}
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium", nil
	}
	return "", ErrNoBrowser
}

// Options say how to load a page and what to measure.
type Options struct {
	// ExecPath is the Chromium binary; empty means Find().
	ExecPath string
	// Width and Height are the viewport in CSS pixels; zero means 1440 by 900.
	Width, Height int
	// Selector is a CSS selector whose element must be visible; its size is reported.
	// Empty means "body".
	Selector string
	// Screenshot asks for a PNG of the whole page.
	Screenshot bool
	// Media emulates a CSS media type, e.g. "print" to see the print style sheet; empty
	// means the default (screen).
	Media string
}

// Result is what loading a page showed.
type Result struct {
	// ConsoleErrors are the page's console.error calls, uncaught exceptions and browser
	// log entries at error level (such as failed resource loads), as "type: text".
	ConsoleErrors []string
	// Width and Height are the size of the Selector's element in CSS pixels.
	Width, Height int64
	// PageWidth is the width of the whole laid-out page in CSS pixels (the document's
	// scrollWidth): more than the viewport's width means the page scrolls sideways.
	PageWidth int64
	// PNG is the full-page screenshot when Options.Screenshot was set.
	PNG []byte
}

// flags are the Chromium switches: headless, no sandbox (containers run as root), and
// every background service off so that nothing but the page is fetched.
var flags = []string{
	"headless", "no-sandbox", "disable-gpu", "disable-quic", "no-first-run",
	"disable-background-networking", "disable-component-update", "disable-sync",
	"disable-default-apps", "disable-extensions", "disable-breakpad", "no-default-browser-check",
	"disable-dev-shm-usage", "hide-scrollbars", "mute-audio",
}

// Session is a page open in a headless Chromium, for callers that act on it over time
// (a live dashboard that must change without a reload). Make it with Open and Close it.
type Session struct {
	ctx     context.Context // the page's tab: hand it to chromedp.Run
	cleanup []func()        // run in reverse by Close

	stopConsole context.CancelFunc
	wg          sync.WaitGroup
	mu          sync.Mutex
	errs        []string
}

// Open starts a fresh headless Chromium, opens rawURL in it and waits until the
// Selector's element is visible. Console errors are collected from before the page loads
// until Close. ctx bounds the whole session, browser start included.
func Open(ctx context.Context, rawURL string, opt Options) (_ *Session, err error) {
	path := opt.ExecPath
	if path == "" {
		if path, err = Find(); err != nil {
			return nil, err
		}
	}
	w, h := opt.Width, opt.Height
	if w <= 0 || h <= 0 {
		w, h = 1440, 900
	}
	sel := opt.Selector
	if sel == "" {
		sel = "body"
	}
	profile, err := os.MkdirTemp("", "holoproxy-chromium-")
	if err != nil {
		return nil, err
	}
	s := &Session{}
	s.cleanup = append(s.cleanup, func() { removeProfile(profile) })
	defer func() {
		if err != nil {
			s.Close()
		}
	}()

	allocOpts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(w, h),
	}
	for _, f := range flags {
		allocOpts = append(allocOpts, chromedp.Flag(f, true))
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, allocOpts...)
	s.cleanup = append(s.cleanup, cancelAlloc)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	s.cleanup = append(s.cleanup, cancelBrowser)
	s.ctx = bctx

	// Subscribe to the console before navigating so that no message is lost; the
	// subscription ends when sctx is cancelled.
	sctx, stopConsole := context.WithCancel(bctx)
	s.stopConsole = stopConsole
	messages := chromedp.Console(sctx)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.IsException() {
				s.mu.Lock()
				s.errs = append(s.errs, m.String())
				s.mu.Unlock()
			}
		}
	}()

	media := chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{Media: opt.Media})
		return err
	})
	if err := chromedp.Do(bctx,
		chromedp.EmulateViewport(int64(w), int64(h)),
		media,
		chromedp.Navigate(rawURL),
		chromedp.WaitVisible(chromedp.CSS(sel)),
	); err != nil {
		return nil, fmt.Errorf("headless: loading %s: %w", rawURL, err)
	}
	return s, nil
}

// Context returns the page's tab, for chromedp.Run and chromedp.Do.
func (s *Session) Context() context.Context { return s.ctx }

// ConsoleErrors returns the page's console.error calls and uncaught exceptions so far, as
// "type: text".
func (s *Session) ConsoleErrors() ([]string, error) {
	// A round trip through the page makes sure console events sent before it arrived.
	if _, err := chromedp.Run(s.ctx, chromedp.Evaluate[bool]("true")); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.errs...), nil
}

// Close stops the browser and removes its profile directory.
func (s *Session) Close() {
	if s.stopConsole != nil {
		s.stopConsole()
		s.stopConsole = nil
	}
	s.wg.Wait()
	for i := len(s.cleanup) - 1; i >= 0; i-- {
		s.cleanup[i]()
	}
	s.cleanup = nil
}

// removeProfile removes a profile directory, retrying briefly: the browser's children may
// still write into it for a moment after it stops.
func removeProfile(dir string) {
	for range 50 {
		if err := os.RemoveAll(dir); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Load opens rawURL in a fresh headless Chromium, waits until the Selector's element is
// visible and returns what it saw. ctx bounds the whole run, browser start included.
func Load(ctx context.Context, rawURL string, opt Options) (res Result, err error) {
	s, err := Open(ctx, rawURL, opt)
	if err != nil {
		return res, err
	}
	defer s.Close()
	sel := opt.Selector
	if sel == "" {
		sel = "body"
	}
	box, err := chromedp.Run(s.ctx, chromedp.Dimensions(chromedp.CSS(sel)))
	if err != nil {
		return res, fmt.Errorf("headless: measuring %s: %w", sel, err)
	}
	res.Width, res.Height = box.Width, box.Height
	if res.PageWidth, err = chromedp.Run(s.ctx, chromedp.Evaluate[int64]("document.documentElement.scrollWidth")); err != nil {
		return res, fmt.Errorf("headless: measuring the page: %w", err)
	}
	if opt.Screenshot {
		if res.PNG, err = chromedp.Run(s.ctx, chromedp.FullScreenshot(100)); err != nil {
			return res, fmt.Errorf("headless: screenshot: %w", err)
		}
	}
	res.ConsoleErrors, err = s.ConsoleErrors()
	return res, err
}

// FileURL returns the file:// URL of a local file.
func FileURL(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	return (&url.URL{Scheme: "file", Path: filepath.ToSlash(abs)}).String(), nil
}

// ScreenshotFile renders the HTML file htmlPath and writes a full-page PNG of it to
// pngPath, for documentation and lab runs. Options.Screenshot is implied.
func ScreenshotFile(ctx context.Context, htmlPath, pngPath string, opt Options) error {
	u, err := FileURL(htmlPath)
	if err != nil {
		return err
	}
	opt.Screenshot = true
	res, err := Load(ctx, u, opt)
	if err != nil {
		return err
	}
	return os.WriteFile(pngPath, res.PNG, 0o644)
}
