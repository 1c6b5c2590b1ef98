package transport

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
)

func TestFrameRoundTrip(t *testing.T) {
	frames := []outFrame{
		{kind: kindPush, payload: []byte("hello")},
		{kind: kindRequest, id: 1, payload: nil},
		{kind: kindReplyOK, id: 1<<64 - 1, payload: bytes.Repeat([]byte{7}, 70000)},
		{kind: kindReplyErr, id: 42, payload: []byte("no")},
	}
	var buf bytes.Buffer
	w := bufio.NewWriter(&buf)
	for i := range frames {
		if err := writeFrame(w, &frames[i]); err != nil {
			t.Fatal(err)
		}
	}
	w.Flush()
	wire := buf.Len()
	r := bufio.NewReader(&buf)
	total := 0
	for _, want := range frames {
		got, n, err := readFrame(r, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if got.kind != want.kind || got.id != want.id || !bytes.Equal(got.payload, want.payload) || n != want.size() {
			t.Fatalf("got %d/%d/%d bytes, want %d/%d/%d bytes", got.kind, got.id, len(got.payload), want.kind, want.id, len(want.payload))
		}
		total += n
	}
	if total != wire {
		t.Fatalf("sizes add up to %d, wire has %d", total, wire)
	}
	if _, _, err := readFrame(r, 1<<20); err != io.EOF {
		t.Fatalf("at the end: %v, want io.EOF", err)
	}
	// A frame cut short is not a clean end.
	cut := pushFrame("abcdef")
	if _, _, err := readFrame(bufio.NewReader(bytes.NewReader(cut[:len(cut)-2])), 100); err != io.ErrUnexpectedEOF {
		t.Fatalf("truncated: %v", err)
	}
}

// FuzzReadFrame feeds arbitrary bytes to the frame reader: it must never
// panic, never return a payload over the limit, and only return frames that
// are valid.
func FuzzReadFrame(f *testing.F) {
	f.Add(pushFrame("hello"))
	f.Add(rawFrame(frameBodyMin+3, kindRequest, 9, []byte("abc")))
	f.Add(rawFrame(0xffffffff, kindPush, 0, nil))
	f.Add(rawFrame(2, kindReplyOK, 1, nil))
	f.Add([]byte{0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		const limit = 256
		r := bufio.NewReader(bytes.NewReader(data))
		for {
			fr, n, err := readFrame(r, limit)
			if err != nil {
				if !errors.Is(err, errMalformed) && err != io.EOF && err != io.ErrUnexpectedEOF {
					t.Fatalf("unexpected error kind: %v", err)
				}
				return
			}
			if len(fr.payload) > limit || n != frameHeaderLen+len(fr.payload) {
				t.Fatalf("frame of %d bytes (n=%d) past the limit", len(fr.payload), n)
			}
			if (fr.kind == kindPush) != (fr.id == 0) {
				t.Fatalf("kind %d with id %d", fr.kind, fr.id)
			}
		}
	})
}

func TestResolveAdvertised(t *testing.T) {
	remote := &net.TCPAddr{IP: net.ParseIP("10.1.2.3"), Port: 55555}
	for adv, want := range map[string]string{
		"10.9.9.9:7946":         "10.9.9.9:7946",
		"chatd-2.chatd:7946":    "chatd-2.chatd:7946",
		"0.0.0.0:7946":          "10.1.2.3:7946",
		"[::]:7946":             "10.1.2.3:7946",
		":7946":                 "10.1.2.3:7946",
		"not an address at all": "not an address at all",
	} {
		if got := resolveAdvertised(adv, remote); got != want {
			t.Errorf("resolveAdvertised(%q) = %q, want %q", adv, got, want)
		}
	}
}
