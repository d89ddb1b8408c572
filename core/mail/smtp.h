/*
 * smtp.h - the SMTP protocol (RFC 5321 with PIPELINING, SIZE, 8BITMIME,
 * ENHANCEDSTATUSCODES) for the connection engine of server.h: local
 * delivery only (RCPT for users of the users file, 550 5.7.1 otherwise),
 * 250 after DATA only when mail_deliver succeeded for every recipient.
 * DATA lines are limited to 1000 octets with the CRLF, not counting the
 * dot added by dot-stuffing (RFC 5321 4.5.3.1.6).
 */
#ifndef CAT_MAIL_SMTP_H
#define CAT_MAIL_SMTP_H

#include "core/mail/server.h"

#define SMTP_CMD_LINE_MAX 512    /* RFC 5321 4.5.3.1.4, CRLF included */
#define SMTP_TEXT_LINE_MAX 1000  /* RFC 5321 4.5.3.1.6, CRLF included */
#define SMTP_MAX_RCPTS 100       /* RFC 5321 4.5.3.1.8 */

extern const struct srv_proto smtp_proto;

/* LMTP (RFC 2033): the same server with LHLO instead of HELO/EHLO and one
 * reply per accepted recipient after DATA. For a listener of its own (never
 * port 25): lis[].proto = &lmtp_proto in server.c. */
extern const struct srv_proto lmtp_proto;

#endif
