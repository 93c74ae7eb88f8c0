import type { Config } from '../config/config';

/** Settings of the web page and its development token endpoint (CHATFLOW_DEV_TOKENS, CHATFLOW_WEB_API_URL). */
export type WebSettings = Config['web'];
