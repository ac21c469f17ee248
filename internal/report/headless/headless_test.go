package headless

import (
	"bytes"
	"context"
	"errors"
	"image/png"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// browser returns the Chromium to test with; a missing one skips, except under CI=true.
func browser(t *testing.T) string {
	t.Helper()
	path, err := Find()
	if errors.Is(err, ErrNoBrowser) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true but no browser: %v", err)
		}
		t.Skipf("skipping browser test: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// TestScreenshotFile loads a local file through a file:// URL and checks that the PNG it
// writes decodes and has the viewport's width.
func TestScreenshotFile(t *testing.T) {
	exe := browser(t)
	dir := t.TempDir()
	page := filepath.Join(dir, "page.html")
	shot := filepath.Join(dir, "page.png")
	html := `<!DOCTYPE html><html><head><link rel="icon" href="data:,"></head>` +
		`<body style="margin:0"><div id="box" style="width:300px;height:120px;background:#2c7bb6"></div></body></html>`
	if err := os.WriteFile(page, []byte(html), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name          string
		width, height int
	}{
		{"default viewport", 0, 0},
		{"small viewport", 640, 400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			if err := ScreenshotFile(ctx, page, shot, Options{ExecPath: exe, Width: tc.width, Height: tc.height, Selector: "#box"}); err != nil {
				t.Fatal(err)
			}
			data, err := os.ReadFile(shot)
			if err != nil {
				t.Fatal(err)
			}
			img, err := png.Decode(bytes.NewReader(data))
			if err != nil {
				t.Fatalf("screenshot is not a PNG: %v", err)
			}
			want := tc.width
			if want == 0 {
				want = 1440
			}
			if got := img.Bounds().Dx(); got != want {
				t.Errorf("screenshot is %d pixels wide, want %d", got, want)
			}
		})
	}
}

// TestLoadMeasuresElement checks the reported size of an element and that a selector
// that never appears is an error, not a hang.
func TestLoadMeasuresElement(t *testing.T) {
	exe := browser(t)
	page := filepath.Join(t.TempDir(), "page.html")
	if err := os.WriteFile(page, []byte(`<!DOCTYPE html><html><head><link rel="icon" href="data:,">`+
		`<style>#box { width: 300px; height: 120px } @media print { #box { width: 100px } }</style></head>`+
		`<body><div id="box">x</div></body></html>`), 0o644); err != nil {
		t.Fatal(err)
	}
	u, err := FileURL(page)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		media string
		wantW int64
	}{
		{"", 300},
		{"print", 100},
	}
	for _, tc := range tests {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		res, err := Load(ctx, u, Options{ExecPath: exe, Selector: "#box", Media: tc.media})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if res.Width != tc.wantW || res.Height != 120 {
			t.Errorf("media %q: #box is %dx%d, want %dx120", tc.media, res.Width, res.Height, tc.wantW)
		}
		if len(res.ConsoleErrors) != 0 {
			t.Errorf("console errors on a clean page: %q", res.ConsoleErrors)
		}
	}

	short, cancelShort := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancelShort()
	if _, err := Load(short, u, Options{ExecPath: exe, Selector: "#missing"}); err == nil {
		t.Error("Load of a missing element succeeded, want an error")
	}
}
