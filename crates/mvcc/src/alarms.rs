//! The alarm list (NOSPACE, CORRUPT) and what active alarms refuse.

use etcd_proto::errors::{self, EtcdError};
use etcd_proto::etcdserverpb::{
    AlarmMember, AlarmRequest, AlarmResponse, AlarmType, alarm_request,
};

use crate::store::{Store, header};

impl Store {
    /// Active alarms sorted by (member ID, alarm type).
    pub fn alarms(&self) -> Vec<AlarmMember> {
        self.alarms
            .iter()
            .map(|(member_id, alarm)| AlarmMember {
                member_id: *member_id,
                alarm: *alarm,
            })
            .collect()
    }
    fn alarm_active(&self, alarm: AlarmType) -> bool {
        self.alarms
            .iter()
            .any(|(_, active)| *active == alarm as i32)
    }
    /// etcd's capped and corrupt appliers: with CORRUPT active every KV/lease write is refused;
    /// with NOSPACE active writes that add data (`adds_data`) are refused.
    pub(crate) fn check_alarms(&self, adds_data: bool) -> Result<(), EtcdError> {
        if self.alarm_active(AlarmType::Corrupt) {
            return Err(errors::CORRUPT);
        }
        if adds_data && self.alarm_active(AlarmType::Nospace) {
            return Err(errors::NO_SPACE);
        }
        Ok(())
    }
    pub(crate) fn apply_alarm(&mut self, request: &AlarmRequest) -> AlarmResponse {
        let member = (request.member_id, request.alarm);
        let alarms = match alarm_request::AlarmAction::try_from(request.action) {
            Ok(alarm_request::AlarmAction::Get) => self
                .alarms()
                .into_iter()
                .filter(|m| request.alarm == AlarmType::None as i32 || m.alarm == request.alarm)
                .collect(),
            Ok(alarm_request::AlarmAction::Activate) if request.alarm != AlarmType::None as i32 => {
                self.alarms.insert(member);
                vec![AlarmMember {
                    member_id: member.0,
                    alarm: member.1,
                }]
            }
            Ok(alarm_request::AlarmAction::Deactivate) if self.alarms.remove(&member) => {
                vec![AlarmMember {
                    member_id: member.0,
                    alarm: member.1,
                }]
            }
            _ => Vec::new(),
        };
        AlarmResponse {
            header: header(self.revision),
            alarms,
        }
    }
}
