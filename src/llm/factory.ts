// Picks the provider from configuration (LLM_PROVIDER and friends, DESIGN.md).
import { OpenAiCompatibleLlm } from './openai';
import { LlmProvider } from './port';
import { SimulatedLlm } from './simulated';

export interface LlmProviderConfig {
  provider: 'simulated' | 'openai';
  baseUrl?: string;
  apiKey?: string;
  model?: string;
  timeoutMs: number;
  delayScale: number;
}

/** Used when LLM_MODEL is unset; servers that host one model usually ignore the name. */
export const DEFAULT_OPENAI_MODEL = 'gpt-4o-mini';

export function createLlmProvider(cfg: LlmProviderConfig): LlmProvider {
  switch (cfg.provider) {
    case 'simulated':
      return new SimulatedLlm({ delayScale: cfg.delayScale });
    case 'openai': {
      // Fail at startup, not on the first message.
      if (!cfg.baseUrl?.trim()) {
        throw new Error('LLM_PROVIDER=openai requires LLM_BASE_URL (e.g. http://localhost:8000/v1)');
      }
      let url: URL;
      try {
        url = new URL(cfg.baseUrl.trim());
      } catch {
        throw new Error(`LLM_BASE_URL is not a valid URL: "${cfg.baseUrl}"`);
      }
      if (url.protocol !== 'http:' && url.protocol !== 'https:') {
        throw new Error(`LLM_BASE_URL must be http(s), got "${cfg.baseUrl}"`);
      }
      if (!(cfg.timeoutMs > 0)) throw new Error(`LLM timeout must be > 0 ms, got ${cfg.timeoutMs}`);
      return new OpenAiCompatibleLlm({
        baseUrl: cfg.baseUrl.trim(),
        apiKey: cfg.apiKey || undefined,
        model: cfg.model?.trim() || DEFAULT_OPENAI_MODEL,
        timeoutMs: cfg.timeoutMs,
      });
    }
    default:
      throw new Error(`unknown LLM provider "${(cfg as { provider: string }).provider}" (expected simulated or openai)`);
  }
}
