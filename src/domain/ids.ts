import { createHash } from 'node:crypto';

/**
 * The message id is derived from (client id, client_message_id), so a resend
 * of the same message maps to the same id everywhere: the gateway, the
 * projections and the workers all deduplicate on it.
 */
export function messageIdFor(clientId: string, clientMessageId: string): string {
  const h = createHash('sha256').update(clientId).update('\0').update(clientMessageId).digest();
  return `m_${h.subarray(0, 16).toString('base64url')}`;
}

/** The reply to a message has an id derived from it: a retried worker cannot produce two. */
export function responseIdFor(messageId: string): string {
  return `r_${messageId.replace(/^m_/, '')}`;
}

export const MAX_CLIENT_MESSAGE_ID_LENGTH = 128;
export const MAX_CLIENT_ID_LENGTH = 128;
