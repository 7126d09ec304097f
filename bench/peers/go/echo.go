// Go echo server: net package, one goroutine per connection, the loop io.Copy
// runs (copyBuffer) with io.Copy's default 32 KiB buffer, written out so that
// io.Copy(c, c) does not take TCPConn.ReadFrom's splice path (socket -> pipe
// -> the same socket), which is not what a typical Go service does with the
// bytes it reads. Write on a net.Conn blocks (parks the goroutine) until every
// byte is written, so partial writes never lose data and a peer that does not
// read stops us reading; on EOF we close after the last write.
// usage: echo PORT   (binds 127.0.0.1)
package main

import (
	"fmt"
	"net"
	"os"
	"time"
)

func handle(c *net.TCPConn) {
	defer c.Close()
	c.SetNoDelay(true) // Go's default, stated for clarity
	buf := make([]byte, 32*1024)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return // io.EOF or a real error: all read bytes were written back
		}
	}
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: echo PORT")
		os.Exit(2)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:"+os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("go echo listening on", ln.Addr())
	tl := ln.(*net.TCPListener)
	for {
		c, err := tl.AcceptTCP()
		if err != nil {
			time.Sleep(5 * time.Millisecond) // e.g. EMFILE: do not spin
			continue
		}
		go handle(c)
	}
}
