// Command etcd is etcd's own server (go.etcd.io/etcd/server/v3/etcdmain), built
// inside this module so that build.sh needs no distribution package: Debian's
// etcd 3.4 lacks the watch progress notifications that kube-apiserver needs for
// streaming lists, which kwok's and the controllers' clients use.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
