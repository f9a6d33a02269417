"""HTTP pieces shared by the mini-program API and the desk: errors, auth, idempotency, paging."""
