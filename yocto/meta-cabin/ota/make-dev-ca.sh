#!/usr/bin/env bash
# Makes a fresh development CA and signing certificate in dev-ca/ (the CA key is not kept:
# the committed set can sign bundles, not issue new signers). Production keys live in the
# maker's HSM, never in a repository.
set -euo pipefail
cd "$(dirname "$0")/dev-ca"
ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
openssl req -x509 "${ec[@]}" -keyout ca.key.pem -out ca.cert.pem -days 3650 \
    -subj "/O=cabin development/CN=cabin development CA" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
openssl req "${ec[@]}" -keyout signing.key.pem -out signing.csr -subj "/O=cabin development/CN=cabin development signing"
# No extendedKeyUsage: rauc's default purpose check (S/MIME signing) then accepts it; a
# production signer gets codeSigning and the target sets [keyring] check-purpose=codesign.
printf "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n" >signing.ext
openssl x509 -req -in signing.csr -CA ca.cert.pem -CAkey ca.key.pem -CAcreateserial -out signing.cert.pem -days 3650 -extfile signing.ext
rm -f signing.csr signing.ext ca.cert.srl ca.key.pem
