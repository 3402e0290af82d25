#!/bin/sh
# RFC 8693 token exchange at /oauth2/token, as any OAuth 2.0 token-exchange client sends it.
# `audience` may repeat; `scope=serviceaccount:NAMESPACE/NAME` selects the service account.
# Errors are RFC 6749 §5.2 documents: invalid_request, invalid_grant, invalid_scope,
# invalid_target, unsupported_grant_type, server_error, temporarily_unavailable.
set -eu
curl -sf https://tokenvend.example.com/oauth2/token \
  --data-urlencode grant_type=urn:ietf:params:oauth:grant-type:token-exchange \
  --data-urlencode "subject_token=$ID_TOKEN" \
  --data-urlencode subject_token_type=urn:ietf:params:oauth:token-type:id_token \
  --data-urlencode requested_token_type=urn:ietf:params:oauth:token-type:jwt \
  --data-urlencode audience=https://kubernetes.default.svc \
  --data-urlencode scope=serviceaccount:production/webapp-deployer
# => {"access_token":"eyJ...","issued_token_type":"urn:ietf:params:oauth:token-type:jwt",
#     "token_type":"Bearer","expires_in":900,"scope":"serviceaccount:production/webapp-deployer"}
