//! The conversation as chat messages, for every backend that speaks to a language model
//! (the cloud endpoint, the on-device LM): the persona (never its creator notes), what is
//! remembered, the context and the driving policy, the recent turns, the new message.

use crate::backend::Request;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatRole {
    System,
    User,
    Assistant,
}

impl ChatRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ChatRole::System => "system",
            ChatRole::User => "user",
            ChatRole::Assistant => "assistant",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    pub role: ChatRole,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: ChatRole, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
        }
    }
}

/// The conversation as chat messages: the persona (never its creator notes), what is
/// remembered, the context and the policy, the recent turns, the new message.
pub fn messages(req: &Request<'_>) -> Vec<ChatMessage> {
    layout(req, Layout::Cloud)
}

/// Where the notes that change every turn go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// All in the first system message, as chat APIs expect.
    Cloud,
    /// In a system message just before the new user message, so the persona and the
    /// earlier turns stay a stable prefix that an on-device model's KV cache reuses.
    CacheFriendly,
}

pub fn layout(req: &Request<'_>, layout: Layout) -> Vec<ChatMessage> {
    let zh = req.lang == "zh";
    let mut system = req.card.system_text(&req.user);
    let facts = &req.memory.facts;
    let mut notes = Vec::new();
    if let Some(name) = &facts.name {
        notes.push(format!("The user's name is {name}."));
    }
    if !facts.likes.is_empty() {
        notes.push(format!("The user likes: {}.", facts.likes.join(", ")));
    }
    if !facts.dislikes.is_empty() {
        notes.push(format!("The user dislikes: {}.", facts.dislikes.join(", ")));
    }
    if !facts.plans.is_empty() {
        notes.push(format!("The user's plans: {}.", facts.plans.join("; ")));
    }
    if !facts.places.is_empty() {
        notes.push(format!(
            "Places the user mentioned: {}.",
            facts.places.join(", ")
        ));
    }
    if !req.memory.summary.is_empty() {
        let summary: Vec<&str> = req.memory.summary.iter().map(String::as_str).collect();
        notes.push(format!("Earlier the user said: {}", summary.join(" / ")));
    }
    for lore in &req.lore {
        notes.push(lore.content.clone());
    }
    notes.push(format!("The user's mood seems {}.", req.mood.mood.as_str()));
    if req.care.long_drive {
        notes.push(format!(
            "The user has driven {} minutes without a break: gently suggest a rest.",
            req.care.driving_mins
        ));
    }
    if req.care.late_night {
        notes.push("It is late at night: be calm and quiet.".into());
    }
    notes.push(if req.care.moving {
        format!("The car is moving. Answer in at most {} characters, as plain spoken sentences: no lists, markdown, emoji or links.", req.max_chars)
    } else {
        format!("The car is parked. Answer in plain sentences, at most {} characters, no markdown.", req.max_chars)
    });
    notes.push(if zh {
        "Answer in Simplified Chinese.".into()
    } else {
        "Answer in English.".into()
    });
    let notes = notes.join("\n");
    if layout == Layout::Cloud {
        system.push_str("\n\n");
        system.push_str(&notes);
    }
    let mut messages = vec![ChatMessage::new(ChatRole::System, system)];
    for m in &req.memory.window {
        let role = if m.from_user {
            ChatRole::User
        } else {
            ChatRole::Assistant
        };
        messages.push(ChatMessage::new(role, m.text.clone()));
    }
    if layout == Layout::CacheFriendly {
        messages.push(ChatMessage::new(ChatRole::System, notes));
    }
    messages.push(ChatMessage::new(ChatRole::User, req.text));
    let post = req.card.data.post_history_instructions.trim();
    if !post.is_empty() {
        messages.push(ChatMessage::new(
            ChatRole::System,
            crate::persona::substitute(post, &req.card.data.name, &req.user),
        ));
    }
    messages
}
