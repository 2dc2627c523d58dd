#!/usr/bin/env bash
# Make the certificates for the extender's mutual TLS (docs/KUBERNETES.md "TLS"):
#
#   deploy/make-certs.sh OUT_DIR [EXTRA_SAN ...]      e.g. IP:10.96.0.77
#
# writes into OUT_DIR
#   ca.crt, ca.key          a CA (EC P-256, 10 years) for both certificates below
#   server/tls.crt, .key    the extender's serving certificate, for the Service
#                           edgeplace.edgeplace-system.svc (and its other names;
#                           EDGEPLACE_SERVICE / EDGEPLACE_NAMESPACE change them)
#                           plus EXTRA_SAN entries (DNS:name or IP:address)
#   client/tls.crt, .key    kube-scheduler's client certificate (CN kube-scheduler)
# and copies ca.crt into server/ and client/, so that each folder is the
# content of one Secret:
#
#   kubectl -n edgeplace-system create secret generic edgeplace-extender-tls --from-file=OUT_DIR/server
#   kubectl -n edgeplace-system create secret generic edgeplace-scheduler-client-tls --from-file=OUT_DIR/client
#
# For the default scheduler, copy OUT_DIR/client/* to /etc/kubernetes/edgeplace/
# on every control-plane node. Needs openssl. Existing files are not overwritten.
set -euo pipefail
out="${1:?usage: deploy/make-certs.sh OUT_DIR [EXTRA_SAN ...]}"
shift
service="${EDGEPLACE_SERVICE:-edgeplace}"
namespace="${EDGEPLACE_NAMESPACE:-edgeplace-system}"
days="${EDGEPLACE_CERT_DAYS:-825}"
if [[ -e "$out/ca.crt" ]]; then
  echo "make-certs: $out/ca.crt exists; choose an empty folder" >&2
  exit 2
fi
mkdir -p "$out/server" "$out/client"
ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
openssl req -x509 "${ec[@]}" -days 3650 -subj "/CN=edgeplace-extender-ca" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -keyout "$out/ca.key" -out "$out/ca.crt" 2>/dev/null
sans="DNS:$service.$namespace.svc,DNS:$service.$namespace.svc.cluster.local,DNS:$service.$namespace,DNS:$service"
for extra in "$@"; do sans="$sans,$extra"; done
leaf() {  # leaf DIR SUBJECT EXTENSIONS
  local dir="$1" ext
  ext="$(mktemp)"
  printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n%s\n' "$3" > "$ext"
  openssl req -new "${ec[@]}" -subj "$2" -keyout "$dir/tls.key" -out "$dir/tls.csr" 2>/dev/null
  openssl x509 -req -in "$dir/tls.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" -days "$days" \
    -set_serial "0x$(openssl rand -hex 16)" -extfile "$ext" -out "$dir/tls.crt" 2>/dev/null
  rm -f "$dir/tls.csr" "$ext"
  cp "$out/ca.crt" "$dir/ca.crt"
  chmod 600 "$dir/tls.key"
}
leaf "$out/server" "/CN=$service.$namespace.svc" "extendedKeyUsage=serverAuth
subjectAltName=$sans"
leaf "$out/client" "/CN=kube-scheduler" "extendedKeyUsage=clientAuth"
chmod 600 "$out/ca.key"
echo "make-certs: wrote $out/{ca.crt,ca.key,server/,client/} (server names: $sans)"
