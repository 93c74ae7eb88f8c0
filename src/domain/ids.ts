import { hash } from 'node:crypto';

/**
 * The message id is derived from (client id, conversation id,
 * client_message_id): the idempotency key is scoped to the conversation, so a
 * resend in the same conversation maps to the same id everywhere (gateway,
 * projections, workers all deduplicate on it) and the same key in another
 * conversation is another message.
 */
export function messageIdFor(clientId: string, conversationId: string, clientMessageId: string): string {
  // One-shot hash: a createHash object per message cost more than the hashing itself.
  const h = hash('sha256', `${clientId}\0${conversationId}\0${clientMessageId}`, 'buffer') as unknown as Buffer;
  return `m_${h.subarray(0, 16).toString('base64url')}`;
}

/** The reply to a message has an id derived from it: a retried worker cannot produce two. */
export function responseIdFor(messageId: string): string {
  return `r_${messageId.replace(/^m_/, '')}`;
}

export const MAX_CLIENT_MESSAGE_ID_LENGTH = 128;
export const MAX_CLIENT_ID_LENGTH = 128;

/** An id the client sent, as it may be echoed back in an error: never longer than the longest valid one. */
export function echoId(id: string): string {
  return id.length <= MAX_CLIENT_MESSAGE_ID_LENGTH ? id : `${id.slice(0, MAX_CLIENT_MESSAGE_ID_LENGTH)}…`;
}
