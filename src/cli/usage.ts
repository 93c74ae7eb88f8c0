/** Help texts. The first lines of each (up to the blank line) are the usage synopsis. */

const CONNECTION = `Identity and server (chat, history):
  --client-id <id>     who you are; a token is minted for it from the server's secret
                       (found in --data-dir: run where the server runs, or use --token)
  --token <jwt>        use this bearer token instead (client id = its subject;
                       --client-id, when given too, must be the same)
  --insecure           send x-client-id instead of a token (server needs
                       CHATFLOW_INSECURE_CLIENT_ID=true)
  --server <host:port> gRPC address (default $CHATFLOW_GRPC_ADDR or 127.0.0.1:50051)
  --tls                speak TLS to it, checking its certificate against the system's roots
  --ca <pem file>      speak TLS, trusting this certificate (a self-signed server's)
  --data-dir <dir>     where the local secret lives (default $CHATFLOW_DATA_DIR or ./data;
                       the secret is $CHATFLOW_AUTH_SECRET when set)
  --json               one JSON object per line instead of the human format`;

export const MAIN_HELP = `Usage: chatflow <command> [options]

Commands:
  token <client-id>    print a bearer token minted from the local secret
  chat                 open a chat stream (interactive, or scripted with --send/--file)
  history              list your conversations, or the messages of one
  log check|repair     verify the embedded event log, or cut it at its first bad record (server stopped)
  backup --to <dir>    copy the embedded default's data dir, consistent, while the server runs

Run "chatflow <command> --help" for the options of a command.
Exit codes: 0 ok; 1 error (a message not answered, a server status, a local
failure); 2 bad usage; 130 stopped with Ctrl-C.`;

export const TOKEN_HELP = `Usage: chatflow token <client-id> [--ttl 24h] [--data-dir ./data]

Prints a JWT (HS256, sub = client id) signed with $CHATFLOW_AUTH_SECRET or
<data-dir>/secret, the server's secret (it creates it at its first start; run
this where the server runs, or pass its --data-dir).

Options:
  --ttl <duration>     lifetime: 3600s, 90m, 24h, 7d (default 24h)
  --data-dir <dir>     default $CHATFLOW_DATA_DIR or ./data`;

export const CHAT_HELP = `Usage: chatflow chat --client-id <id> [--token <jwt> | --insecure] [--tz <IANA>]
                     [--server <host:port>] [--conversation <id>] [--resume-after <seq>]
                     [--replaces-session <id>] [--save-dir ./downloads] [--send <text>]...
                     [--file <path>]... [--no-wait] [--reconnect-for <s>] [--json]

Opens the bidirectional Chat stream. Each message gets a label, [1], [2], …, and
its reply is printed as one block under that label, whole, however replies
overlap (in an interactive terminal the replies still streaming are redrawn in
place). Without --send/--file it is interactive:
  <text>               send a text message
  /audio <path>        send an audio file   (/video <path>, /image <path> likewise)
  /history             messages of this conversation
  /conversations       your conversations
  /ping                measure the round trip
  /quit                wait for outstanding replies, then leave (also Ctrl-D)
  /help                this list

Options:
  --tz <IANA zone>     your time zone (default: the system zone)
  --conversation <id>  continue a conversation
  --resume-after <seq> replay what you missed after this event seq
  --replaces-session <id>
                       take over your earlier stream if the server still holds it
                       (its session id; after a lost connection the server may not
                       know yet, and would refuse a second one ALREADY_EXISTS)
  --save-dir <dir>     where voice and image replies are saved (default ./downloads)
  --send <text>        scripted: send this text (repeatable)
  --file <path>        scripted: send this file; kind from the extension (repeatable)
  --no-wait            server full: exit at once (default: wait for a slot, retrying
                       after the server's retry-after-ms, with a countdown)
  --reconnect-for <s>  connection lost (server restart, network): keep coming back
                       for this long, resuming where you were and sending again what
                       was not accepted (default 120; 0: end the session at once)

Exit codes: 0 every message answered; 1 a message refused, failed or unanswered
(scripted runs: --send/--file or piped input; a summary goes to stderr), the
server refused the connection or ended the stream, or a reply's media could not
be saved; 2 bad usage; 130 stopped with Ctrl-C.

${CONNECTION}`;

export const HISTORY_HELP = `Usage: chatflow history --client-id <id> [--token <jwt> | --insecure] [--server <host:port>]
                        [--conversation <id>] [--after-seq N] [--page-size N] [--json]

Without --conversation lists your conversations; with it, lists its messages
oldest first (all pages).

Options:
  --conversation <id>  the conversation to list
  --after-seq <N>      only messages after this seq (needs --conversation)
  --page-size <N>      entries per request, 1..1000 (default: the server's)
  --tz <IANA zone>     zone for displayed times (default: the system zone)

${CONNECTION}`;

/** The synopsis part of a help text (shown after a usage error). */
export function synopsis(help: string): string {
  return help.split('\n\n')[0]!;
}
