package wsframe

import (
	"bytes"
	"testing"
)

// TestAppendHeader: the three payload length forms of RFC 6455 §5.2, at
// their edges, after the FIN bit and the opcode.
func TestAppendHeader(t *testing.T) {
	for _, tc := range []struct {
		size int
		want []byte
	}{
		{0, []byte{0x81, 0}},
		{125, []byte{0x81, 125}},
		{126, []byte{0x81, 126, 0, 126}},
		{65535, []byte{0x81, 126, 0xff, 0xff}},
		{65536, []byte{0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0}},
	} {
		if got := AppendHeader(nil, 1, tc.size); !bytes.Equal(got, tc.want) {
			t.Errorf("AppendHeader(text, %d) = % x, want % x", tc.size, got, tc.want)
		}
	}
	if got, want := Append([]byte("x"), 0x8, []byte("bye")), []byte("x\x88\x03bye"); !bytes.Equal(got, want) {
		t.Errorf("Append(close) = %q, want %q", got, want)
	}
}

// TestBufferIsEmptyAndReleaseKeepsHugeOnesOut: a lent buffer is empty even
// after one was released holding bytes; one grown past the limit is not
// pooled again.
func TestBufferIsEmptyAndReleaseKeepsHugeOnesOut(t *testing.T) {
	bp := Buffer()
	buf := append(*bp, "frames"...)
	Release(bp, buf)
	if b := Buffer(); len(*b) != 0 {
		t.Fatalf("lent buffer holds %q, want empty", *b)
	}
	huge := Buffer()
	big := make([]byte, 0, maxPooled+1)
	Release(huge, big)
	if cap(*huge) > maxPooled {
		t.Fatalf("a %d-byte buffer went back to the pool", cap(big))
	}
}
