//! From a parsed utterance to a call on the service that owns it, and a short spoken reply.
//! The services are behind [`Services`], so routing is tested without a bus.

use crate::intent::{Intent, Parsed};

/// What the voice hook may ask of the other services.
#[allow(async_fn_in_trait)]
pub trait Services {
    /// Starts a wallpaper of `scene`; the job's path.
    async fn generate_wallpaper(&self, scene: &str) -> Result<String, Failure>;
    async fn set_time_aware(&self, enabled: bool) -> Result<(), Failure>;
    /// The prompt of the wallpaper on show, if any.
    async fn current_wallpaper(&self) -> Result<Option<String>, Failure>;
    /// Continuous driving time in seconds.
    async fn driving_secs(&self) -> Result<u64, Failure>;
    /// The companion's reply to `text` (`persona`: none for the configured one).
    async fn chat(&self, text: &str, persona: Option<&str>, lang: &str) -> Result<String, Failure>;
    /// Files feedback; its id.
    async fn submit_feedback(&self, text: &str, lang: &str) -> Result<String, Failure>;
}

/// A service call that did not work: the D-Bus error name and message.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub name: String,
    pub message: String,
}

impl Failure {
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            name: cabin_common::error::names::UNAVAILABLE.into(),
            message: message.into(),
        }
    }
}

/// The outcome of `Voice1.Handle`.
#[derive(Debug, Clone, PartialEq)]
pub struct Handled {
    pub handled: bool,
    pub reply: String,
    pub intent: String,
}

/// Scenes for "a new wallpaper" with nothing said about it: rotated by the hour.
const ANY_SCENE: &[(&str, &str)] = &[
    ("海边日落", "sea sunset"),
    ("雪山", "snowy mountains"),
    ("星空", "starry night"),
    ("森林", "forest"),
    ("湖泊倒影", "lake with reflections"),
    ("樱花", "cherry blossoms"),
];

/// What the caller told about the situation (`Handle`'s context).
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// The companion persona to talk to.
    pub persona: Option<String>,
    /// The local hour, for the scene of "a new wallpaper" with none named.
    pub hour: u32,
}

pub async fn route(services: &impl Services, parsed: &Parsed, context: &Context) -> Handled {
    let hour = context.hour;
    let zh = parsed.lang == "zh";
    let name = parsed.intent.name().to_string();
    let say = |handled: bool, zh_text: String, en_text: String| Handled {
        handled,
        reply: if zh { zh_text } else { en_text },
        intent: name.clone(),
    };
    let sorry = |f: &Failure, what_zh: &str, what_en: &str| {
        if f.name.ends_with("Unavailable")
            || f.name.contains("ServiceUnknown")
            || f.name.contains("NameHasNoOwner")
        {
            say(
                false,
                format!("抱歉，{what_zh}现在不可用。"),
                format!("Sorry, {what_en} isn't available right now."),
            )
        } else {
            say(
                false,
                format!("抱歉，{what_zh}没能完成：{}", f.message),
                format!("Sorry, {what_en} couldn't do that: {}", f.message),
            )
        }
    };
    // Unsure of a command: ask, do nothing.
    if let Some(question) = &parsed.confirm {
        return Handled {
            handled: false,
            reply: question.clone(),
            intent: name,
        };
    }
    match &parsed.intent {
        Intent::WallpaperGenerate { scene, .. } => {
            let scene = if scene.is_empty() {
                let (zh_scene, en_scene) = ANY_SCENE[hour as usize % ANY_SCENE.len()];
                if zh {
                    zh_scene.to_string()
                } else {
                    en_scene.to_string()
                }
            } else {
                scene.clone()
            };
            match services.generate_wallpaper(&scene).await {
                Ok(_) => say(
                    true,
                    format!("好的，正在生成「{scene}」壁纸，稍等片刻。"),
                    format!("Sure, painting a {scene} wallpaper for you now."),
                ),
                Err(f) => sorry(&f, "壁纸服务", "the wallpaper service"),
            }
        }
        Intent::TimeAware { enabled } => match services.set_time_aware(*enabled).await {
            Ok(()) if *enabled => say(
                true,
                "好的，壁纸会跟随时间变化，从日出到夜晚。".into(),
                "Done, the wallpaper now follows the time of day.".into(),
            ),
            Ok(()) => say(
                true,
                "好的，已关闭时间壁纸，壁纸保持不变。".into(),
                "Done, the time wallpaper is off; the picture stays as it is.".into(),
            ),
            Err(f) => sorry(&f, "壁纸服务", "the wallpaper service"),
        },
        Intent::WallpaperStatus {} => match services.current_wallpaper().await {
            Ok(Some(prompt)) => say(
                true,
                format!("现在的壁纸是「{prompt}」。"),
                format!("Your wallpaper is \"{prompt}\"."),
            ),
            Ok(None) => say(
                true,
                "现在还没有生成过壁纸。要来一张吗？".into(),
                "There's no generated wallpaper yet. Want one?".into(),
            ),
            Err(f) => sorry(&f, "壁纸服务", "the wallpaper service"),
        },
        Intent::DriveTime {} => match services.driving_secs().await {
            Ok(secs) => {
                let (h, m) = (secs / 3600, secs % 3600 / 60);
                let rest_zh = if secs >= 2 * 3600 {
                    "该休息一下了，下个服务区停一停吧。"
                } else {
                    ""
                };
                let rest_en = if secs >= 2 * 3600 {
                    " Time for a break at the next service area."
                } else {
                    ""
                };
                match (h, zh) {
                    (0, true) => say(
                        true,
                        format!("你已经连续开了{m}分钟。{rest_zh}"),
                        String::new(),
                    ),
                    (_, true) => say(
                        true,
                        format!("你已经连续开了{h}小时{m}分钟。{rest_zh}"),
                        String::new(),
                    ),
                    (0, false) => say(
                        true,
                        String::new(),
                        format!("You've been driving for {m} minutes.{rest_en}"),
                    ),
                    (_, false) => say(
                        true,
                        String::new(),
                        format!("You've been driving for {h} h {m} min.{rest_en}"),
                    ),
                }
            }
            Err(f) => sorry(&f, "车辆信息", "the vehicle data"),
        },
        Intent::Chat { text } => match services
            .chat(text, context.persona.as_deref(), parsed.lang)
            .await
        {
            Ok(reply) => say(true, reply.clone(), reply),
            Err(f) => sorry(&f, "聊天伙伴", "the companion"),
        },
        Intent::Feedback { text } if text.trim().is_empty() => say(
            true,
            "好的，请说说具体是什么问题？".into(),
            "Sure, what's the problem?".into(),
        ),
        Intent::Feedback { text } => match services.submit_feedback(text, parsed.lang).await {
            Ok(_) => say(
                true,
                "已经记下你的反馈，谢谢！".into(),
                "Thanks, your feedback is recorded.".into(),
            ),
            Err(f) => sorry(&f, "反馈服务", "the feedback service"),
        },
        Intent::CarCommand { .. } => say(
            false,
            "这是车辆控制指令，请交给车机语音处理。".into(),
            "That's one for the car's own voice control.".into(),
        ),
        Intent::Unknown { reason } => say(
            false,
            format!("抱歉，这个我还帮不上忙。（{reason}）"),
            format!("Sorry, I can't help with that yet ({reason})."),
        ),
    }
}

/// A question asked back, waiting for "yes" or "no".
#[derive(Debug, Clone)]
pub struct Pending {
    pub parsed: Parsed,
    pub asked_at: std::time::Instant,
}

/// How long a question asked back waits for its answer.
pub const PENDING_FOR: std::time::Duration = std::time::Duration::from_secs(30);

const YES: &[&str] = &[
    "好",
    "好的",
    "好啊",
    "好呀",
    "是",
    "是的",
    "对",
    "对的",
    "对啊",
    "可以",
    "行",
    "要",
    "换吧",
    "没错",
    "yes",
    "yeah",
    "yep",
    "sure",
    "ok",
    "okay",
    "please",
    "yes please",
    "do it",
    "go ahead",
    "please do",
    "right",
    "correct",
];
const NO: &[&str] = &[
    "不",
    "不要",
    "不用",
    "不是",
    "算了",
    "算",
    "不行",
    "不好",
    "别",
    "取消",
    "no",
    "nope",
    "no thanks",
    "cancel",
    "never mind",
    "nevermind",
    "don't",
];

/// An answer to a question asked back: `Some(true)` yes, `Some(false)` no, `None` something
/// else (a new request).
pub fn answer(normalized: &str) -> Option<bool> {
    // "嗯" and "嗯嗯" are fillers to the normaliser but a yes to a question.
    if normalized.is_empty() {
        return Some(true);
    }
    let trimmed = normalized
        .trim_end_matches(['吧', '啊', '呀', '的', '了', '呢'])
        .trim();
    for t in [normalized.trim(), trimmed] {
        if YES.contains(&t) {
            return Some(true);
        }
        if NO.contains(&t) {
            return Some(false);
        }
    }
    None
}

/// `route` with memory of one question asked back: a "yes" within [`PENDING_FOR`] carries
/// the command out, a "no" drops it, anything else is a new request.
pub async fn route_with_pending(
    services: &impl Services,
    parsed: &Parsed,
    context: &Context,
    pending: &mut Option<Pending>,
) -> Handled {
    if let Some(p) = pending.take()
        && p.asked_at.elapsed() < PENDING_FOR
    {
        match answer(&parsed.normalized) {
            Some(true) => {
                let mut confirmed = p.parsed.clone();
                confirmed.confirm = None;
                return route(services, &confirmed, context).await;
            }
            Some(false) => {
                let zh = p.parsed.lang == "zh";
                return Handled {
                    handled: true,
                    reply: if zh {
                        "好的，那就不了。"
                    } else {
                        "Okay, never mind."
                    }
                    .into(),
                    intent: p.parsed.intent.name().into(),
                };
            }
            None => {}
        }
    }
    let handled = route(services, parsed, context).await;
    if parsed.confirm.is_some() {
        *pending = Some(Pending {
            parsed: parsed.clone(),
            asked_at: std::time::Instant::now(),
        });
    }
    handled
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::intent::parse;

    /// Records what was asked of the services.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    impl Services for Recorder {
        async fn generate_wallpaper(&self, scene: &str) -> Result<String, Failure> {
            self.0.lock().unwrap().push(format!("generate {scene}"));
            Ok("/job".into())
        }
        async fn set_time_aware(&self, enabled: bool) -> Result<(), Failure> {
            self.0.lock().unwrap().push(format!("time {enabled}"));
            Ok(())
        }
        async fn current_wallpaper(&self) -> Result<Option<String>, Failure> {
            Ok(None)
        }
        async fn driving_secs(&self) -> Result<u64, Failure> {
            Ok(0)
        }
        async fn chat(&self, text: &str, _: Option<&str>, _: &str) -> Result<String, Failure> {
            self.0.lock().unwrap().push(format!("chat {text}"));
            Ok("hi".into())
        }
        async fn submit_feedback(&self, text: &str, _: &str) -> Result<String, Failure> {
            self.0.lock().unwrap().push(format!("feedback {text}"));
            Ok("id".into())
        }
    }

    fn run(utterance: &str) -> (Handled, Vec<String>) {
        let services = Recorder::default();
        let parsed = parse(utterance, None);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let handled = runtime.block_on(route(&services, &parsed, &Context::default()));
        let calls = services.0.lock().unwrap().clone();
        (handled, calls)
    }

    #[test]
    fn an_unsure_command_is_asked_back_and_nothing_is_done() {
        let parsed = parse("雪山", None);
        assert_eq!(parsed.confirm.as_deref(), Some("要换成雪山壁纸吗？"));
        let (handled, calls) = run("雪山");
        assert_eq!(handled.reply, "要换成雪山壁纸吗？");
        assert!(!handled.handled && calls.is_empty(), "{calls:?}");
    }

    #[test]
    fn yes_carries_out_what_was_asked_back_and_no_drops_it() {
        let services = Recorder::default();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut pending = None;
        let mut say = |u: &str| {
            runtime.block_on(route_with_pending(
                &services,
                &parse(u, None),
                &Context::default(),
                &mut pending,
            ))
        };
        assert_eq!(say("雪山").reply, "要换成雪山壁纸吗？");
        assert!(say("好的").handled);
        assert_eq!(say("雪山").reply, "要换成雪山壁纸吗？");
        assert_eq!(say("不用了").reply, "好的，那就不了。");
        assert_eq!(say("雪山").reply, "要换成雪山壁纸吗？");
        assert!(say("嗯").handled, "嗯 is a yes");
        assert_eq!(say("雪山").reply, "要换成雪山壁纸吗？");
        assert_eq!(say("算了吧").reply, "好的，那就不了。");
        assert_eq!(say("雪山").reply, "要换成雪山壁纸吗？");
        assert!(say("嗯").handled, "嗯 is a yes");
        assert_eq!(say("雪山").reply, "要换成雪山壁纸吗？");
        assert_eq!(say("算了吧").reply, "好的，那就不了。");
        assert_eq!(
            say("yes").intent,
            "companion.chat",
            "nothing pending any more"
        );
        assert_eq!(
            services.0.lock().unwrap().first().map(String::as_str),
            Some("generate 雪山")
        );
    }

    #[test]
    fn a_clear_command_is_carried_out_and_talk_goes_to_the_companion() {
        let (handled, calls) = run("换一张雪山的壁纸");
        assert!(handled.handled);
        assert_eq!(calls, vec!["generate 雪山".to_string()]);
        let (handled, calls) = run("tell me something funny");
        assert_eq!(handled.intent, "companion.chat");
        assert_eq!(calls, vec!["chat tell me something funny".to_string()]);
    }
}
