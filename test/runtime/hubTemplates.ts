/**
 * Chat templates of llava-hf checkpoints, verbatim (each string is the template text as the
 * checkpoint's chat_template.json holds it, JSON-decoded). There is no network here; where each
 * copy came from:
 *
 * * LLAVA_15: llava-hf/llava-1.5-7b-hf (and llava-v1.6-vicuna) chat_template.json, as quoted in
 *   openvino.genai's tokenizer (`chat_template_fallback_map`, an exact-match table of Hub
 *   templates, comment "llava-1.5, llava-v1.6-vicuna (chat_template.json)"); the same text is in
 *   several other public repositories.
 * * LLAVA_16_MISTRAL: llava-hf/llava-v1.6-mistral-7b-hf chat_template.json, from the same table
 *   ("tiny-random-llava-next, llava-v1.6-mistral (chat_template.json)"). It writes the literal
 *   text `<\s>` after an answer (not `</s>`): that is what the Hub's file says.
 * * CHATML_ONEVISION: the `chat_template` of transformers' own converter
 *   (src/transformers/models/llava_onevision/convert_llava_onevision_weights_to_hf.py), which
 *   the llava-hf/llava-onevision-qwen2-*-hf processors were saved with.
 * * LLAMA3_NEXT: llava-hf/llama3-llava-next-8b-hf, as three independent public repositories
 *   copy it (set as `processor.chat_template` for that checkpoint, or keyed
 *   "LlavaNextForConditionalGeneration" / "LlamaForCausalLM"); identical in all three.
 */
export const LLAVA_15 =
  "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}{% endif %}{# Render all images first #}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}{# Render all text next #}{% if message['role'] != 'assistant' %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] + ' '}}{% endfor %}{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{% generation %}{{ content['text'] + ' '}}{% endgeneration %}{% endfor %}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}";

export const LLAVA_16_MISTRAL =
  "{% for message in messages %}{% if message['role'] == 'system' %}{{ '<<SYS>>\n' + message['content'][0]['text'] + '\n<</SYS>>\n\n' }}{% elif message['role'] == 'user' %}{{ '[INST] ' }}{# Render all images first #}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}{# Render all text next #}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] }}{% endfor %}{{' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' ' + message['content'][0]['text'] + '<\\\\s> '}}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}";

export const CHATML_ONEVISION =
  "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n'}}{# Render all images first #}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}{# Render all video then #}{% for content in message['content'] | selectattr('type', 'equalto', 'video') %}{{ '<video>\n' }}{% endfor %}{# Render all text next #}{% if message['role'] != 'assistant' %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] }}{% endfor %}{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{% generation %}{{ content['text'] }}{% endgeneration %}{% endfor %}{% endif %}{{'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

export const LLAMA3_NEXT =
  "{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'}}{# Render all images first #}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>' }}{% endfor %}{# Render all text next #}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ '\n' + content['text'] + '<|eot_id|>' }}{% endfor %}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

export const HUB_TEMPLATES = { 'llava-1.5': LLAVA_15, 'llava-v1.6-mistral': LLAVA_16_MISTRAL, 'ChatML (llava-onevision)': CHATML_ONEVISION, 'Llama-3 (llama3-llava-next)': LLAMA3_NEXT } as const;
