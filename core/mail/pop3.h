/*
 * pop3.h - the POP3 protocol (RFC 1939 + CAPA, UIDL, TOP, PIPELINING,
 * RESP-CODES of RFC 2449) for the connection engine of server.h. The
 * maildrop is locked for the session (mail_list); DELE is applied at QUIT
 * only; a session that ends otherwise unlocks without deleting. Messages are
 * stored with LF line ends and sent with CRLF and dot-stuffing; sizes are
 * the sizes as sent. The UIDL is the Maildir id when it is a valid RFC 1939
 * unique-id, else "h" and 32 hex digits of a hash of it (stable).
 */
#ifndef CAT_MAIL_POP3_H
#define CAT_MAIL_POP3_H

#include "core/mail/server.h"

#define POP3_LINE_MAX 512  /* RFC 2449: 255 octets for commands; we allow 512 */
#define POP3_UIDL_MAX 70   /* RFC 1939 7: a unique-id is 1..70 of 0x21..0x7E */

extern const struct srv_proto pop3_proto;

#endif
