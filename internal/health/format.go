package health

import "strconv"

func itoa(n int) string { return strconv.Itoa(n) }

func ftoa(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

// pct formats a share as a whole percentage ("12 %").
func pct(f float64) string { return strconv.Itoa(int(f*100+0.5)) + " %" }
