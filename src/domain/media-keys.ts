/**
 * Where media live in the object store. An upload's key names its client
 * (base64url, so any client id is a safe path segment) and its message; a
 * reply's names its conversation and response. Keys are derived from ids
 * only, so a resend or a redo by another worker writes the same key.
 */

const EXTENSIONS: Readonly<Record<string, string>> = {
  'audio/wav': '.wav', 'audio/mpeg': '.mp3', 'audio/ogg': '.ogg', 'audio/flac': '.flac', 'audio/webm': '.webm', 'audio/mp4': '.m4a', 'audio/aac': '.aac',
  'video/mp4': '.mp4', 'video/webm': '.webm', 'video/quicktime': '.mov', 'video/ogg': '.ogv', 'video/x-msvideo': '.avi', 'video/x-matroska': '.mkv',
  'image/png': '.png', 'image/jpeg': '.jpg', 'image/gif': '.gif', 'image/webp': '.webp',
};

/** The file extension of a MIME type we accept ('' for any other). */
export function extensionOf(mimeType: string): string {
  return EXTENSIONS[mimeType] ?? '';
}

export function uploadKey(clientId: string, messageId: string, mimeType: string): string {
  return `uploads/${Buffer.from(clientId).toString('base64url')}/${messageId}${extensionOf(mimeType)}`;
}

export function replyMediaKey(conversationId: string, responseId: string, mimeType: 'audio/wav' | 'image/png'): string {
  return `replies/${conversationId}/${responseId}${extensionOf(mimeType)}`;
}
