/* tmpl-builtin.c -- chat templates: the built-in templates for models that ship none. */
#include "config.h"

#include <string.h>

#include "natter/tmpl.h"

static const struct {
	const char *name;
	const char *src;
} builtins[] = {
	{ "chatml",
	  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
	  "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}" },
	{ "llama2",
	  "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
	  "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
	  "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
	  "{% if loop.index0 == 0 and system_message != false %}"
	  "{% set content = '<<SYS>>\n' + system_message + '\n<</SYS>>\n\n' + message['content'] %}"
	  "{% else %}{% set content = message['content'] %}{% endif %}"
	  "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content | trim + ' [/INST]' }}"
	  "{% elif message['role'] == 'assistant' %}{{ ' ' + content | trim + ' ' + eos_token }}{% endif %}{% endfor %}" },
	{ "llama3",
	  "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + "
	  "'<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}"
	  "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}" },
	{ "phi3",
	  "{% for message in messages %}{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}"
	  "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}" },
	{ "zephyr",
	  "{% for message in messages %}{{ '<|' + message['role'] + '|>\n' + message['content'] + eos_token + '\n' }}"
	  "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}" },
	{ "gemma",
	  "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{% set first = messages[0]['content'] + '\n\n' %}"
	  "{% set msgs = messages[1:] %}{% else %}{% set first = '' %}{% set msgs = messages %}{% endif %}"
	  "{% for message in msgs %}{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
	  "{{ '<start_of_turn>' + role + '\n' + (first if loop.first else '') + message['content'] | trim + "
	  "'<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}" },
};

const char tmpl_builtin_names[] = "chatml\0llama2\0llama3\0phi3\0zephyr\0gemma\0";

const char *
tmpl_builtin(const char *name)
{
	for (size_t i = 0; i < sizeof(builtins) / sizeof(builtins[0]); i++)
		if (!strcmp(builtins[i].name, name))
			return builtins[i].src;
	return NULL;
}

const char *
tmpl_builtin_guess(const char *arch, const char *src)
{
	if (src) {
		if (strstr(src, "<|im_start|>")) return "chatml";
		if (strstr(src, "<|start_header_id|>")) return "llama3";
		if (strstr(src, "<start_of_turn>")) return "gemma";
		if (strstr(src, "<|assistant|>") && strstr(src, "<|end|>")) return "phi3";
		if (strstr(src, "[INST]")) return "llama2";
	}
	if (arch && !strcmp(arch, "qwen2")) return "chatml";
	if (arch && !strcmp(arch, "phi3")) return "phi3";
	if (arch && !strcmp(arch, "gemma")) return "gemma";
	return "chatml";
}
