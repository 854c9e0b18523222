"""Write the bundled sample corpora (ProfNER and MEDDOPROF layouts) from hand-written text.

Every tweet and clinical case below was written for this project; nothing is copied from the
real corpora (only public ESCO / SNOMED CT code identifiers and their labels are reused).
Entities are marked inline and their offsets computed here, so they are exact by construction:

    ProfNER:    [[médicos|P]]                 P/S/A/F = PROFESION, SITUACION_LABORAL,
                                              ACTIVIDAD, FIGURATIVA
                [[consejera|P|x2]]            the same span annotated twice (exact duplicate)
                [[portavoz de la [[Policía Nacional|P]]|P]]   nested spans
    MEDDOPROF:  [[albañil|P|PAC|7112.1]]      type, class (PAC/FAM/SAN/OTR), NORM code

Offsets are Python ``str`` indices (code points), end exclusive; a MEDDOPROF text that starts
with a BOM counts it as character 0, as the real corpus does.  Output is deterministic: run
``python -m profner_models.sample.build_sample`` after editing the texts and commit the result.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent

TYPES = {"P": "PROFESION", "S": "SITUACION_LABORAL", "A": "ACTIVIDAD", "F": "FIGURATIVA"}
CLASSES = {"PAC": "PACIENTE", "FAM": "FAMILIAR", "SAN": "SANITARIO", "OTR": "OTROS"}

# Emoji sequences written as escapes so the invisible joiners stay visible in this file.
NURSE_SKIN = "\U0001F469\U0001F3FD\u200d\u2695\ufe0f"  # woman health worker, medium skin tone
FAMILY = "\U0001F468\u200d\U0001F469\u200d\U0001F467\u200d\U0001F466"  # family ZWJ sequence
RAINBOW_FLAG = "\U0001F3F3\ufe0f\u200d\U0001F308"
SHRUG_WOMAN = "\U0001F937\u200d\u2640\ufe0f"
POLICE_MAN = "\U0001F46E\U0001F3FB\u200d\u2642\ufe0f"
RUNNER_WOMAN = "\U0001F3C3\u200d\u2640\ufe0f"
HAND_MAN = "\U0001F64B\U0001F3FD\u200d\u2642\ufe0f"
SHRUG_LIGHT = "\U0001F937\U0001F3FB\u200d\u2640\ufe0f"

# --------------------------------------------------------------------------------------------
# ProfNER tweets. Positives first, then negatives (near misses included); the split and the
# file order are derived from the position in these lists, so append rather than insert.
# --------------------------------------------------------------------------------------------
POSITIVE_TWEETS = [
    "Aplausos a las 20h para todos los [[sanitarios|P]] que siguen al pie del cañón 👏🏽👏🏽 #QuédateEnCasa",
    "Mi hermana es [[enfermera|P]] en la UCI del hospital de mi ciudad y lleva tres semanas sin ver a sus hijos 😢",
    "El [[presidente del Gobierno|P]] comparecerá esta tarde para anunciar la prórroga del estado de alarma https://t.co/Qw3rTy8uIo",
    "🇪🇸 Los agentes de la [[Guardia Civil|P]] han parado hoy a 40 vehículos en la autovía sin justificación para desplazarse",
    "Me han metido en un [[ERTE|S]] y todavía no he cobrado nada. ¿Alguien sabe cuándo paga el SEPE? 😤",
    "[[#teletrabajo|S]] día 23: el gato ya se sienta en las reuniones de Teams 🐈",
    "Gracias a los [[#sanitarios|P]], [[#policías|P]] y [[#bomberos|P]] que nos cuidan estos días 💙",
    "La [[ministra de Trabajo|P]] asegura que los [[autónomos|S]] cobrarán la prestación extraordinaria antes de fin de mes",
    NURSE_SKIN + " Soy [[médica de familia|P]] en un centro de salud rural y os pido por favor que no vengáis sin cita previa.\nLlamad primero.",
    "Mi padre es [[camionero|P]] y no ha parado ni un día durante el confinamiento. Nadie habla de ellos 🚛",
    "Despiden a 200 [[trabajadores|S]] de la fábrica de componentes de Villanueva en plena pandemia https://t.co/Lk9sPqR2Wz",
    "@laura_ms88 mi tía es [[cajera|P]] en un súper y dice que la gente se ha vuelto loca con el papel higiénico 🧻😂",
    "Los [[rastreadores|P]] contratados por la comunidad no dan abasto: más de 300 casos nuevos por día",
    "El [[alcalde|P]] de mi pueblo ha repartido mascarillas casa por casa 😷 Así sí.",
    "El [[portavoz de la [[Policía Nacional|P]]|P]] ha pedido calma tras los altercados de anoche en el barrio",
    "La [[consejera de Sanidad|P|x2]] dice que los datos de hoy son buenos 📉 veremos mañana",
    "Hoy me he despedido de mis [[compañeros de trabajo|S]] porque cierran la tienda. 12 años allí 💔",
    "Las [[limpiadoras|P]] de los hospitales también son esenciales y cobran una miseria. #COVID19",
    "Qué poca vergüenza el [[diputado|P]] que se salta la cuarentena para irse a su segunda residencia",
    "Los [[científicos|P]] del CSIC trabajan en una vacuna propia 🔬 https://t.co/Vb2NmX7cQe",
    "Toda la vida de [[autónoma|S]] para que ahora me den 600 euros. Esto es de risa",
    "📢 Se buscan [[voluntarios|A]] para repartir comida a personas mayores en el barrio. Escribidnos por DM",
    "El [[cantante|A]] del grupo ha dado positivo y cancelan la gira de verano 🎤",
    "Este tío se cree el [[rey|F]] del barrio porque tiene mascarilla FFP2 👑😂",
    "Ya hay más [[desempleados|S]] que en la crisis de 2008 según los datos de abril 📊",
    "Mi madre es [[profesora|P]] de primaria y está dando clases por videollamada a niños de 6 años. Heroína.",
    "Los [[farmacéuticos|P]] también estamos en primera línea 💊 y nadie nos aplaude a las 8",
    "los [[medicos|P]] de urgencias llevan semanas doblando turnos y sin EPIs suficientes",
    SHRUG_WOMAN + " La [[jueza|P]] ha archivado la denuncia contra la residencia de mayores",
    "Mañana vuelven a abrir las peluquerías. Mi [[peluquera|P]] ya tiene lista de espera de dos semanas ✂️",
    "Los [[repartidores|P]] trabajando sin protección mientras los demás pedimos pizza 🍕",
    RAINBOW_FLAG + " Orgullo desde el balcón este año. Y un abrazo enorme a las [[trabajadoras sociales|P]] que atienden a los más vulnerables",
    "Los [[agricultores|P]] se quedan sin temporada de recogida por el cierre de fronteras 🍓",
    "El [[Papa|P]] celebra la misa de Pascua sin fieles en una imagen histórica",
    "Mi novio lleva desde marzo [[teletrabajando|S]] en la mesa de la cocina y ya no sabemos dónde comer 😅",
    "Los [[policías locales|P]] han desalojado una fiesta ilegal con más de 50 personas 🚔",
    "El [[director del centro de salud|P]] dice que no tienen tests para todos los pacientes con síntomas",
    "Grandísimos los [[bomberos|P]] desinfectando las calles del pueblo de madrugada 🚒👏🏼",
    "Mi abuela es [[jubilada|S]] y vive sola; le hacemos la compra entre todos los nietos",
    "¿Y los [[pensionistas|S]] qué? Nadie se acuerda de ellos en las medidas",
    "El [[epidemiólogo|P]] jefe advierte de un posible rebrote en otoño si no se mantiene la distancia 📏",
    "A mi primo lo han [[despedido|S]] por WhatsApp después de 8 años en la empresa. Vergonzoso.",
    "Los [[estudiantes|S]] de Medicina de último curso se incorporan a los hospitales como refuerzo",
    "Las [[cuidadoras|P]] de las residencias de mayores están agotadas física y mentalmente 💔",
    "Los [[jugadores|A]] del equipo aceptan bajarse el sueldo un 70% mientras dure el parón ⚽",
    "Llamo a mi [[dentista|P]] y me dice que solo atienden urgencias hasta nuevo aviso 🦷",
    "El [[Rey|P]] se dirige esta noche a la nación en un mensaje televisado",
    "Ole por los [[transportistas|P]] que mantienen los supermercados llenos 🚚 #GraciasTransportistas",
    "Hay [[taxistas|P]] llevando gratis a los [[sanitarios|P]] al hospital. Eso es solidaridad 🚕",
    "He visto a la [[portavoz|P]] del Ministerio decir una cosa y mañana la contraria. Así no hay manera",
    "Los [[periodistas|P]] no pueden hacer preguntas en directo en las ruedas de prensa, solo por escrito",
    "Hola, soy [[auxiliar de enfermería|P]] y esta semana se nos han contagiado 4 [[compañeras|S]] de planta 😷",
    "[[#ERTE|S]] ya. Llevo dos meses sin cobrar y con dos niños",
    "Los [[militares|P]] de la UME desinfectan la residencia de mayores 🪖",
    "El [[consejero de Educación|P]] confirma que no habrá vuelta a las aulas este curso",
    "Mis respetos a los [[barrenderos|P]], que siguen limpiando las calles cada día 🧹",
    "Las [[trabajadoras del hogar|S]] se quedan fuera del subsidio. Otra vez las olvidadas",
    "Los [[precarios|S]] somos los primeros en caer en cada crisis. Contratos de 3 días y a la calle",
    "Veo al [[ministro de Sanidad|P]] y me da ansiedad, no puedo más con las cifras 📈",
    "Mi [[psicóloga|P]] me atiende por videollamada y la verdad es que funciona bastante bien 🧠",
    "Vaya [[maestro|F]] del postureo está hecho el influencer ese con sus mascarillas de diseño 🙄",
    "Los [[veterinarios|P]] piden que no se abandonen mascotas por miedo al contagio 🐶",
    "El [[sacerdote|P]] de la parroquia ofrece la misa por YouTube todos los domingos ⛪",
    "Multa de 600€ a un [[repartidor|P]] que iba en bici sin mascarilla. Y los coches oficiales qué",
    "Orgullosa de mi hija, [[enfermera|P]] recién graduada que ha firmado su primer contrato en plena pandemia",
    "Nuestros [[socorristas|P]] estarán en las playas a partir del 1 de julio con medidas especiales 🏖️",
    "Sin [[temporeros|P]] no hay cosecha y sin cosecha no hay comida. Así de simple",
    "La [[presidenta de la Comunidad|P]] anuncia un hospital de campaña en el recinto ferial",
    "Los [[becarios|S]] de la empresa hemos sido los primeros en irnos a casa sin sueldo",
    "🙏🏼 A todos los [[médicos|P]], [[enfermeras|P]], [[celadores|P]] y [[personal de limpieza|P]] del hospital: GRACIAS",
    "La [[alcaldesa|P]] ha cerrado los parques infantiles hasta nuevo aviso",
    "Mañana empiezo a trabajar de [[rastreadora|P]] en el centro de salud. Nervios 😬",
    "Me quedo [[en paro|S]] el lunes. Hostelería, claro 🍻",
    "Los [[camareros|P]] vuelven a las terrazas con mascarilla y guantes. Suerte a todos ☕",
    "Un [[fontanero|P]] vino a casa ayer con EPI completo, parecía un astronauta 😂",
    "El [[ERTE|S]] de mi empresa se alarga hasta septiembre, al menos tengo algo",
    "Los [[funcionarios de prisiones|P]] denuncian falta de material de protección",
    "Mis [[compañeros|S]] de la fábrica se han ido todos a casa y yo sigo aquí en mantenimiento",
    FAMILY + " Conciliar con tres niños y el [[teletrabajo|S]] es imposible. Que alguien me explique cómo",
    "El [[doctor|P]] que me atendió en urgencias fue un encanto a pesar del agotamiento",
    "Gracias a los [[conductores de autobús|P]] que siguen haciendo las rutas para los que tenemos que ir a trabajar 🚌",
    "Los [[empresarios|P]] de la hostelería piden ayudas directas y aplazar impuestos",
    "La [[Policía Local|P]] patrulla con drones para vigilar el confinamiento 🚁",
    "El [[secretario general|P]] del sindicato pide proteger a los [[trabajadores esenciales|S]]",
    "Ya está bien de que el [[vicepresidente|P]] hable de todo menos de lo que le toca",
    "Mi padre, [[agricultor|P]] de toda la vida, dice que nunca había visto los precios tan bajos 🍊",
    "Los [[investigadores|P]] del hospital inician un ensayo clínico con plasma de pacientes recuperados",
    "Las [[camareras de piso|P]] de los hoteles llevan meses en [[ERTE|S]] y sin noticias de cuándo volverán 🛏️",
    "Hoy mi [[jefe|P]] nos ha dicho que o reducimos jornada o cierra. Bonito viernes",
    "Habla el [[experto|P]] de turno en la tele y parece que sabe más que la OMS 🙄",
    "Los [[mineros|P]] donan las mascarillas de sus equipos a los hospitales de la cuenca",
    "El [[gobernador|P]] ha decretado toque de queda en toda la provincia a partir de las 22h",
    "Soy [[estudiante|S]] de enfermería y me han llamado para reforzar el hospital. Allá voy 💪🏾",
    "Con la que está cayendo, el [[artista|A]] ese haciendo conciertos en Instagram desde su mansión",
    "Los [[deportistas|A]] de élite podrán entrenar individualmente desde el lunes " + RUNNER_WOMAN,
    "[[Autónomos|S]] de toda España: mañana se abre el plazo de la prestación por cese de actividad. Os dejo el enlace 👇 https://t.co/Mn4Bv7Cx2Z",
    "El [[fiscal|P]] pide investigar las muertes en las residencias de la región",
    "Los [[tenderos|P]] del mercado de abastos han montado reparto a domicilio 🥬🥕",
    "Menos mal que los [[informáticos|P]] del ayuntamiento han montado la cita previa online en dos días 💻",
    "Qué grande el [[panadero|P]] del barrio dejando barras gratis a los mayores que viven solos 🥖❤️",
    "Los [[sindicalistas|P]] convocan concentraciones frente al ministerio por los [[despidos|S]] en la automoción",
    "La [[viróloga|P]] explica en el vídeo por qué el virus se transmite por aerosoles https://t.co/Ae4Fg5Hh6J",
    "Mi hermano es [[guardia civil|P]] y le han mandado a controlar un paso fronterizo 🇪🇸🇫🇷",
    "@ayto_villaverde ¿Hasta cuándo van a estar los [[monitores|P]] del polideportivo sin cobrar?",
    "UNA [[ENFERMERA|P]] DE MI HOSPITAL HA MUERTO Y NADIE DICE NADA. BASTA YA",
    "El [[Ministro|P]] no ha respondido a ninguna pregunta sobre las mascarillas defectuosas",
    "#QuédateEnCasa 🏠 pero los [[#transportistas|P]] no pueden. Respeto.",
    "Se confirma: los [[desempleados|S]] que agoten la prestación cobrarán un subsidio especial hasta diciembre",
    "👏🏿 Hoy aplaudo por mi madre, [[auxiliar de geriatría|P]] en una residencia, que ha superado el virus",
    "Los [[profesores|P]] no somos [[canguros|F]]. La escuela no puede abrir sin garantías",
    "Mi [[jefa|P]] me ha dicho que si no vuelvo a la oficina el lunes me despide. ¿Eso es legal?",
    "Los [[médicos residentes|P]] hacen guardias de 24h por 900 euros al mes",
    "Tras el cierre, la [[dueña del bar|P]] de la esquina ha montado un puesto de comida para llevar 🥘",
    "Los [[trabajadores|S]] de la planta química secundan la huelga por falta de medidas de seguridad ⚠️",
    "Lo de los [[influencers|A]] saltándose el confinamiento para hacerse fotos en la playa es de traca",
    "El [[embajador|P]] confirma que hay 300 españoles atrapados esperando vuelo de repatriación ✈️🇵🇪",
    "Los [[policias|P]] han multado a mi vecino por salir a correr tres veces en un día 😂",
    "Menudo [[Presidente|P]] tenemos. Ni una autocrítica en dos meses.",
    "Día 40 de confinamiento.\n\nHe hablado con mi amiga [[matrona|P]] y me cuenta que los partos sin acompañante son durísimos.\n\n#COVID19",
    "Última hora 🔴\nLos [[controladores aéreos|P]] reducen la actividad un 90% por la caída de vuelos\nhttps://t.co/Pq7Rs8Tu9V",
    POLICE_MAN + " Enhorabuena a [[@policialocal_villa|P]] por el dispositivo de hoy en el mercadillo",
    "Mi cuñado es [[enfermero|P]] y dice que en su planta ya no quedan batas. Las hacen con bolsas de basura 😡",
    "Las [[enfermeraz|P]] del turno de noche no tienen ni donde sentarse a comer, vergüenza de gestión",
    "⚠️ Los [[parados|S]] de larga duración no tienen acceso a la nueva ayuda, denuncia la plataforma",
    "La vecina del tercero... perdón, la [[reina|F]] de los aplausos ya ha sacado el altavoz otra vez 🎶",
    "Mi cuñado se cree [[epidemiólogo|F]] por haber leído dos hilos en Twitter 🤓",
    "Mil gracias a las [[personas voluntarias|A]] que nos traen las medicinas a casa 🧡",
    "Los [[ciclistas|A]] aficionados ya pueden salir a rodar en grupos de 10 💨",
]

NEGATIVE_TWEETS = [
    "Día 15 de confinamiento y ya he visto todas las series de Netflix 📺",
    "El Ministerio de Sanidad actualiza las cifras: 1.200 nuevos casos en las últimas 24 horas https://t.co/Ab1Cd2Ef3G",
    "¿Alguien sabe si las farmacias abren los domingos durante el estado de alarma?",
    "Falta material sanitario en todos los centros de salud de la provincia",
    "Hoy he hecho pan por primera vez en mi vida y ha salido una piedra 😂🍞",
    "Quédate en casa, salva vidas 🏠❤️ #YoMeQuedoEnCasa",
    "Mi perro es el único de la familia que sale a la calle. Envidia total 🐕",
    "El hospital de campaña ya tiene 500 camas operativas",
    "Las mascarillas quirúrgicas no protegen a quien las lleva, protegen a los demás. Usadlas bien 😷",
    "Llevo tres días sin salir de casa y me duele la cabeza de tanta pantalla",
    "Los datos de hoy son esperanzadores: baja la presión en las UCIs 📉",
    "No entiendo por qué se pueden abrir las iglesias pero no los parques",
    "Me he hecho la prueba PCR y ha salido negativa 🙌🏻🙌🏻",
    "Ánimo a todos los que estáis pasando el virus en casa. Mucha agua y reposo 💧",
    "La novela policíaca que me recomendasteis me la he leído en dos tardes 📚",
    "El parón de la liga se alarga hasta junio como mínimo ⚽",
    "Mi abuela ha aprendido a hacer videollamadas a los 87 años 👵📱",
    "Han cerrado la frontera con Portugal hasta nuevo aviso 🇵🇹🇪🇸",
    "El colegio de mi hija manda deberes como si no hubiera un mañana",
    "Por favor, no acaparéis. Hay comida para todos en los supermercados 🛒",
    "El Gobierno aprueba un nuevo paquete de medidas económicas",
    "He vuelto a correr después de 50 días y casi me muero en el primer kilómetro 🏃",
    "¿Cuántos días lleváis sin ver a vuestros padres? Yo 63 💔",
    "Nuevo récord de contagios en Brasil, según los datos de la universidad https://t.co/Gh5Ij6Kl7M",
    "Mi parte médico dice reposo absoluto una semana",
    "La sanidad pública necesita más inversión, ahora y siempre",
    "Qué ganas de una caña en una terraza con los amigos 🍺☀️",
    "Se acabó la fase 1 en mi provincia. A ver qué tal la 2",
    "Alguien más tiene la sensación de que los días duran 72 horas?",
    "Mi hijo de 4 años cree que el coronavirus es un monstruo que vive en el parque 👹",
    "Las residencias de mayores han sido el gran drama de esta pandemia",
    "La app de rastreo llega a los móviles la semana que viene https://t.co/Nn8Oo9Pp0Q",
    "No salgáis si no es imprescindible. Es por todos.",
    "Este año la Semana Santa se vive desde el balcón ⛪",
    "He aprendido más de virología en dos meses que en toda mi vida 🦠",
    "Hoy toca limpieza general de la casa. Ya no sé qué más limpiar 🧽",
    "El uso de mascarilla será obligatorio en el transporte público desde mañana 🚇",
    "Menudo trabajo me ha costado conseguir harina en el súper 😅",
    "¿Alguien sabe hasta cuándo se puede pedir la cita para el certificado digital?",
    "Colas kilométricas en los bancos de alimentos de la ciudad 😔",
    "Los niños podrán salir una hora al día a partir del domingo 🧒",
    "El virus no entiende de fronteras ni de ideologías",
    "Estoy hasta el moño de las videollamadas de los viernes 🙃",
    "Han detectado un brote en una empresa cárnica de la comarca",
    "Los contagios entre menores de 30 años se disparan tras el verano",
    "Mi madre me ha mandado 40 audios hoy. CUARENTA. 🎙️",
    "Se recomienda lavarse las manos al menos 20 segundos con agua y jabón 🧼",
    "La vuelta al cole va a ser un caos, ya lo veréis",
    "Qué bonito el silencio de la ciudad por las noches 🌙",
    "Por fin abren las librerías 📖😍",
    "Los test de antígenos ya se venden en farmacias sin receta",
    "Día 3 de cuarentena: he contado las baldosas del pasillo. 47.",
    "Me ha llegado el paquete desinfectado con lejía, por si acaso 📦",
    "España supera los 25.000 fallecidos según los datos oficiales 🕯️",
    "La curva se aplana poco a poco, pero no hay que relajarse",
    "Estoy haciendo un puzzle de 3000 piezas. Mandad ayuda 🧩",
    "¿Las peluquerías abren con cita previa o no? Nadie se aclara",
    "Mi gato está harto de que esté todo el día en casa 😾",
    "El Congreso aprueba la sexta prórroga del estado de alarma",
    "No me creo que hayamos llegado a junio así",
    "¡Que vuelva el fútbol ya, por favor! ⚽🙏",
    "Las vacunas de ARN mensajero enseñan a las células a fabricar una proteína del virus",
    "Me ha costado una hora comprar, la cola daba la vuelta a la manzana",
    "Los hospitales de la capital al límite otra vez 🏥",
    "Cancelada la feria de abril. Primera vez en décadas",
    "Ya no me acuerdo de cómo era abrazar a alguien 🤗",
    "El BOE publica hoy las normas para la desescalada https://t.co/Rr1Ss2Tt3U",
    "Lo peor del confinamiento es no poder ver el mar 🌊",
    "Que levante la mano quien haya engordado 5 kilos en cuarentena " + HAND_MAN,
    "Nos quedamos en casa por los que no pueden hacerlo",
    "@marta_gp_ jajaja yo también he hecho bizcocho de plátano, el virus nos ha vuelto locos por la repostería",
    "Los aeropuertos vacíos dan una imagen apocalíptica ✈️",
    "Mi tío dice que el 5G transmite el virus. Cena familiar intensa 🙄",
    "Hoy he salido a tirar la basura y me he sentido libre",
    "Ni un solo caso nuevo en la isla en los últimos 14 días 🏝️",
    "La OMS declara la pandemia mundial por el coronavirus",
    "Cuidado con los bulos que circulan por WhatsApp, contrastad siempre 🔍",
    "Se me ha olvidado cómo se conduce de tanto tiempo sin coger el coche 🚗",
    "El toque de queda empieza a las 23h en toda la comunidad",
    "Mi balcón se ha convertido en mi gimnasio, mi oficina y mi terraza",
    "Nueva cepa detectada en Reino Unido, más contagiosa según los primeros estudios 🇬🇧",
    "Las clases online no son lo mismo, se aprende la mitad",
    "Por fin he podido ver a mi abuela desde la ventana de la residencia 🥹",
    "¿El gel hidroalcohólico caduca?",
    "El centro de salud solo atiende por teléfono hasta nuevo aviso ☎️",
    "Tengo fiebre y tos, ¿debería llamar al 112 o esperar?",
    "Hoy es mi cumpleaños y lo celebro por videollamada con tarta para uno 🎂",
    "Madre mía, las imágenes de Italia son terribles 🇮🇹",
    "La economía caerá un 9% este año según las previsiones del banco central",
    "No es una gripe. Dejad de decir que es una gripe.",
    "Mis plantas nunca habían estado tan bien cuidadas 🌱",
    "Cierran todos los bares y restaurantes a partir de medianoche 🍽️",
    "Recordad: distancia, manos y mascarilla 👐",
    "Las terrazas llenas y luego nos quejamos de los rebrotes",
    "Este verano vacaciones en el pueblo y gracias 🏡",
    "La selectividad se hará en julio con medidas de distancia",
    "Qué raro se me hace ver a la gente con mascarilla por la calle",
    "Mi móvil me dice que he pasado 9 horas al día mirando la pantalla. Normal.",
    "Otro fin de semana de lluvia y confinados ☔",
    "El metro a las 7 de la mañana va igual de lleno que antes. Así no 🚇",
    "Sumamos 21 días sin fallecidos en la comarca 🙏",
    "Ya podemos ir a segundas residencias de la misma provincia",
    "El virus sobrevive hasta 72 horas en el plástico según un estudio",
    "Los tests rápidos que compró el Ministerio no funcionaban 🤦",
    "Echo de menos hasta los atascos de la circunvalación",
    "¿Se puede ir a la playa en fase 2? Yo ya no entiendo nada " + SHRUG_LIGHT,
    "Aplausos a las 20h desde mi balcón, como cada día 👏",
    "Qué tristeza los entierros sin familia 🖤",
    "Este año no hay fiestas de julio. Se me parte el alma",
    "Descargando la app de cita previa y se cuelga cada dos por tres",
    "Lista de la compra:\n- harina\n- levadura\n- paciencia\n\n#cuarentena",
    "Buenos días 🌞\nHoy es domingo, creo. Ya se me mezclan todos los días de la semana",
    "Hilo 🧵 sobre cómo hacer tu propia mascarilla de tela en casa:\n1/7",
    "El Ayuntamiento instala dispensadores de gel en todas las paradas de autobús",
    "Qué miedo me da la segunda ola 😨",
    "La liga vuelve en junio sin público en las gradas",
    "Mi nevera está más vacía que las calles de la ciudad",
    "Ojalá esto sirva para valorar más lo que tenemos",
    "Gracias a todos por los mensajes, ya estoy mejor y sin síntomas 💪🏼",
    "El cole online de mi hijo: 20 minutos de clase y 2 horas de problemas técnicos 💻",
    "La sanidad privada también debería arrimar el hombro",
    "¿Sabéis si los parques caninos están abiertos? 🐾",
    "Doctorado en hacer croquetas con lo que queda en la nevera 🎓",
    "Mañana hay que ir a votar con mascarilla y boli propio 🗳️",
    "El hospital universitario registra su primer día sin ingresos por COVID",
    "Tanto aplauso y luego recortes. Que no se nos olvide en las elecciones",
    "Sigo sin olfato tres semanas después 👃",
    "La gente haciendo cola para entrar en las tiendas de ropa como si no hubiera pandemia 🙄",
    "Vídeo: así están las calles del centro hoy https://t.co/Vv4Ww5Xx6Y",
    "😷😷😷",
    "Qué trabajo más bonito hacen los de la radio local acompañándonos cada mañana",
    "La plantilla de la web del SEPE se ha vuelto a caer, imposible pedir nada",
    "Medicina preventiva recomienda ventilar las aulas cada hora 🪟",
]

# Templated tweets for volume: deterministic combinations of the parts below.
TEMPLATE_OPENERS = [
    "Día {n} de confinamiento", "Semana {week} de cuarentena", "Buenos días desde {city}",
    "Última hora en {city}", "Fase {phase} en {city}", "Resumen del día {n}",
    "Hilo 🧵 día {n}", "Actualización desde {city}",
]
TEMPLATE_BODIES = [
    "{num} casos nuevos y {deaths} fallecidos en las últimas 24 horas",
    "las terrazas vuelven a llenarse al mediodía",
    "sigue la lluvia y nadie sale a la calle",
    "el parque sigue precintado y los niños juegan en el portal",
    "el supermercado limita la entrada a {num} personas a la vez",
    "la gente sale a pasear por franjas horarias",
    "reabren las bibliotecas con aforo reducido",
    "el mercadillo del sábado queda suspendido otra semana",
    "se retrasan las operaciones no urgentes en el hospital comarcal",
    "los contagios bajan por tercer día consecutivo",
    "las playas abren solo para pasear",
    "cierran el paseo marítimo por aglomeraciones",
    "vuelve el transporte interurbano con la mitad de frecuencias",
    "se suspenden las fiestas patronales de este año",
]
TEMPLATE_CLOSERS = [
    "", " 😷", " #COVID19", " #QuédateEnCasa 🏠", " https://t.co/{code}", " 🙏🏽",
    " #coronavirus 📈", " Paciencia.", "\n\n#Desescalada", " 🇪🇸",
]
TEMPLATE_CITIES = ["Zaragoza", "Cádiz", "Lugo", "Murcia", "Teruel", "Bilbao", "Almería",
                   "Segovia", "Palma", "Badajoz", "Logroño", "Huesca", "Oviedo"]
TEMPLATE_POSITIVES = [
    "Gracias a los {prof} de {city} por {act} {emoji}",
    "Hoy en {city} los {prof} han tenido que {act} {emoji}",
]
TEMPLATE_PROFS = [
    "[[sanitarios|P]]", "[[enfermeros|P]]", "[[policías|P]]", "[[conductores|P]]",
    "[[trabajadores|S]] del supermercado", "[[bomberos|P]]", "[[voluntarios|A]]",
    "[[auxiliares|P]]", "[[agentes forestales|P]]", "[[repartidores|P]]",
]
TEMPLATE_ACTS = [
    "no rendirse nunca", "doblar turnos otra vez", "cubrir las bajas de sus compañeros",
    "hacer un trabajo impecable", "aguantar sin material", "atender a los mayores",
    "repartir mascarillas", "trabajar el fin de semana",
]
TEMPLATE_EMOJI = ["👏🏽", "❤️", "💪🏻", "🙌", "🫶", "👏"]

N_TEMPLATE_NEGATIVES = 128
N_TEMPLATE_POSITIVES = 11


def _url_code(k: int) -> str:
    return hashlib.sha256(f"url{k}".encode()).hexdigest()[:10]


def templated_tweets() -> tuple[list[str], list[str]]:
    """(positives, negatives) built from the template parts; every text is distinct."""
    negatives = []
    for k in range(N_TEMPLATE_NEGATIVES):
        opener = TEMPLATE_OPENERS[k % len(TEMPLATE_OPENERS)]
        body = TEMPLATE_BODIES[(k * 5) % len(TEMPLATE_BODIES)]
        closer = TEMPLATE_CLOSERS[(k * 3) % len(TEMPLATE_CLOSERS)]
        fields = dict(n=10 + k, week=1 + k % 12, city=TEMPLATE_CITIES[k % len(TEMPLATE_CITIES)],
                      phase=1 + k % 3, num=30 + 7 * k, deaths=k % 9, code=_url_code(k))
        negatives.append((opener + ": " + body + closer).format(**fields))
    positives = []
    for k in range(N_TEMPLATE_POSITIVES):
        template = TEMPLATE_POSITIVES[k % len(TEMPLATE_POSITIVES)]
        positives.append(template.format(
            prof=TEMPLATE_PROFS[k % len(TEMPLATE_PROFS)],
            city=TEMPLATE_CITIES[(k * 4) % len(TEMPLATE_CITIES)],
            act=TEMPLATE_ACTS[(k * 3) % len(TEMPLATE_ACTS)],
            emoji=TEMPLATE_EMOJI[k % len(TEMPLATE_EMOJI)]))
    return positives, negatives


# --------------------------------------------------------------------------------------------
# MEDDOPROF clinical cases: (document name, starts with BOM, text with inline mentions).
# --------------------------------------------------------------------------------------------
CASES = [
    ("caso_clinico_muestra_psiquiatria1", False, """Motivo de consulta
Varón de 34 años, [[albañil|P|PAC|7112.1]], derivado por su [[médico de atención primaria|P|SAN|2211.1]] por ánimo bajo de tres meses de evolución.
Antecedentes personales
Sin alergias conocidas. Fumador de 20 cigarrillos al día. Consumo ocasional de alcohol los fines de semana.
Enfermedad actual
Refiere que desde que está [[en paro|S|PAC|SCTID: 73438004]] apenas sale de casa y ha dejado de ver a sus amigos.
Vive con su pareja, [[dependienta|P|FAM|5223]] en una tienda de ropa, y dos hijos de 6 y 9 años.
Juicio clínico
Trastorno adaptativo con ánimo depresivo.
Plan
Se inicia sertralina 50 mg y seguimiento por [[psicóloga|P|SAN|2634.2]] del centro de salud mental."""),
    ("caso_clinico_muestra_medicina_interna1", False, """Mujer de 71 años, [[jubilada|S|PAC|SCTID: 105493001]], que consulta por disnea progresiva de dos semanas.
Trabajó durante 30 años como [[limpiadora|P|PAC|9112]] en un hospital.
Hipertensa y diabética tipo 2 en tratamiento con metformina.
A la exploración presenta crepitantes bibasales y edemas maleolares.
La radiografía de tórax muestra cardiomegalia y derrame pleural bilateral.
Se ajusta el tratamiento diurético con buena evolución.
Al alta, su hija, [[auxiliar de enfermería|P|FAM|5321.1.1]], se encargará de los cuidados en domicilio."""),
    ("caso_clinico_muestra_dermatologia1", False, """Varón de 52 años, [[agricultor|P|PAC|6130.2]], con lesiones eritematodescamativas en dorso de manos y antebrazos.
Refiere exposición diaria a pesticidas sin guantes.
Las lesiones empeoran en verano y mejoran en los periodos de descanso.
Biopsia: dermatitis de contacto crónica.
Se recomienda protección con guantes de nitrilo y corticoide tópico.
Revisado por el [[dermatólogo|P|SAN|2212]] a los tres meses, con mejoría franca."""),
    ("caso_clinico_muestra_urgencias1", False, """Varón de 45 años traído por [[policía|P|OTR|5412.1]] tras hallarse inconsciente en la vía pública.
[[Persona sin hogar|S|PAC|SCTID: 32911000]] conocida por los servicios sociales del distrito.
Glasgow 12 a la llegada, olor etílico, sin signos de traumatismo craneal.
Glucemia capilar 54 mg/dl, se administra glucosa intravenosa con recuperación del nivel de conciencia.
Se contacta con la [[trabajadora social|P|OTR|2635.3]] de guardia para buscar plaza en un albergue."""),
    ("caso_clinico_muestra_pediatria1", False, """Niña de 8 años que acude con su madre por cefalea frontal de predominio vespertino.
[[Estudiante|S|PAC|SCTID: 65853000]] de tercero de primaria, con buen rendimiento escolar.
Su [[maestra|P|OTR|2341.1]] ha notado que entorna los ojos para leer la pizarra.
Madre [[ama de casa|S|FAM|SCTID: 444168002]], padre [[taxista|P|FAM|8322.7]].
Exploración neurológica normal. Agudeza visual disminuida en ambos ojos.
Se deriva a oftalmología, donde se confirma miopía y se prescriben gafas.
Desaparición de la cefalea al mes."""),
    ("caso_clinico_muestra_neurologia1", False, """Mujer de 39 años, [[profesora de secundaria|P|PAC|2330]], con episodios de parestesias en hemicuerpo derecho.
Primer episodio hace dos años, autolimitado en una semana.
Actualmente de [[baja laboral|S|PAC|SCTID: 29962006]] desde hace un mes por fatiga intensa.
La resonancia magnética muestra lesiones periventriculares hiperintensas en T2.
Bandas oligoclonales positivas en líquido cefalorraquídeo.
Diagnóstico: esclerosis múltiple remitente recurrente.
Se inicia tratamiento modificador de la enfermedad y seguimiento en la unidad de desmielinizantes.
Nota: un [[compañero|S|OTR|SCTID: 106541005]] de departamento la acompaña a las consultas."""),
    ("caso_clinico_muestra_onco1", False, """Varón de 63 años, [[carpintero|P|PAC|7115.1]] en activo, exfumador desde hace 10 años.
Consulta por epistaxis de repetición y obstrucción nasal izquierda.
La tomografía muestra una masa en fosa nasal izquierda con afectación del seno maxilar.
Biopsia: adenocarcinoma de tipo intestinal, relacionado con la exposición a polvo de madera.
Se realiza resección endoscópica y radioterapia adyuvante.
Se notifica como posible enfermedad profesional a la mutua.
Sin recidiva a los dos años."""),
    ("caso_clinico_muestra_infecciosas1", False, """Mujer de 28 años, [[veterinaria|P|PAC|2250]] en una explotación de ovino, con fiebre de 10 días.
Refiere cefalea intensa, mialgias y sudoración nocturna.
Ha atendido varios partos de ovejas en las semanas previas.
Serología positiva para Coxiella burnetii en fase II.
Diagnóstico: fiebre Q aguda.
Se trata con doxiciclina durante 14 días con resolución del cuadro.
Se informa a los [[ganaderos|P|OTR|6121.1]] de la explotación de las medidas de prevención."""),
    ("caso_clinico_muestra_atencion_primaria1", False, """Varón de 58 años, [[camarero|P|PAC|5131.2]], que consulta por dolor en ambos pies al final de la jornada.
Trabaja de pie unas 10 horas diarias.
Exploración: pies planos, dolor a la palpación de la fascia plantar.
Se pautan plantillas, estiramientos y antiinflamatorios.
Se plantea valorar con la [[fisioterapeuta|P|SAN|2264.3]] del centro si no mejora en un mes.
Acude a revisión con mejoría parcial."""),
    ("caso_clinico_muestra_psiquiatria2", False, """Motivo de consulta
Mujer de 47 años que acude acompañada por su marido, [[vigilante de seguridad|P|FAM|5414.1]].
Antecedentes
Trabajaba como [[administrativa|P|PAC|3343.1]] en una gestoría hasta hace un año, cuando fue [[despedida|S|PAC|SCTID: 73438004]].
Desde entonces refiere insomnio, anhedonia y pensamientos de inutilidad.
Dice que [[trabaja "en negro"|S|PAC|SCTID: 106541005]] unas horas cuidando a una vecina mayor.
Exploración psicopatológica
Consciente y orientada, ánimo deprimido, sin ideación autolítica estructurada.
Juicio clínico
Episodio depresivo moderado.
Tratamiento
Escitalopram 10 mg y seguimiento por [[psiquiatra|P|SAN|2212]] en un mes."""),
    ("caso_clinico_muestra_psiquiatria3", False, """Varón de 19 años, [[estudiante universitario|S|PAC|SCTID: 65853000]], traído a urgencias por sus [[compañeros de piso|S|OTR|SCTID: 106541005]].
Refieren que lleva tres noches sin dormir y habla de forma acelerada.
Consumo de cannabis diario desde los 15 años.
A la exploración, taquipsíquico, con ideas delirantes de perjuicio.
Tóxicos en orina positivos para cannabinoides.
Se ingresa en la unidad de agudos con diagnóstico de episodio psicótico inducido por sustancias.
Sus padres, ambos [[médicos|P|FAM|22]], se desplazan desde su ciudad de origen."""),
    ("caso_clinico_muestra_urologia1", False, """Varón de 41 años, [[conductor de camión|P|PAC|8332.2]], con dolor lumbar izquierdo de inicio brusco irradiado a genitales.
Refiere ingesta escasa de agua durante los viajes largos.
Tira reactiva de orina con hematíes.
La ecografía muestra ureterohidronefrosis izquierda grado II por litiasis de 6 mm.
Se pauta analgesia y tamsulosina, con expulsión espontánea del cálculo a los 5 días.
Se le recomienda aumentar la ingesta hídrica."""),
    ("caso_clinico_muestra_alergologia1", False, """Mujer de 33 años, [[panadera|P|PAC|7512.1]], con rinitis y tos al manipular harina.
Los síntomas mejoran los fines de semana y durante las vacaciones.
Prick test positivo a harina de trigo y alfa-amilasa.
Espirometría con patrón obstructivo leve y prueba broncodilatadora positiva.
Diagnóstico: asma ocupacional por harina.
Se remite al servicio de prevención para valorar un cambio de puesto."""),
    ("caso_clinico_muestra_medtropical1", False, """Varón de 36 años, [[cooperante|P|PAC|2635]] que regresa de una estancia de seis meses en África occidental.
Consulta por fiebre de 39 °C, escalofríos y cefalea desde hace 48 horas.
No realizó quimioprofilaxis antipalúdica.
Gota gruesa positiva para Plasmodium falciparum con parasitemia del 2%.
Se inicia tratamiento con artesunato intravenoso y posteriormente oral.
Evolución favorable, alta al quinto día."""),
    ("caso_clinico_muestra_oftalmologia1", False, """Varón de 29 años, [[soldador|P|PAC|7212.3]], que acude por dolor ocular y fotofobia bilateral.
Refiere haber trabajado la tarde anterior sin careta protectora.
Exploración: queratitis punteada superficial en ambos ojos.
Diagnóstico: queratoconjuntivitis actínica.
Se pauta oclusión, colirio ciclopléjico y lágrimas artificiales.
Resolución completa en 48 horas."""),
    ("caso_clinico_muestra_endocrinologia1", False, """Mujer de 55 años, [[cocinera|P|PAC|5120.1]] en un comedor escolar.
Remitida por su [[médica de familia|P|SAN|2211.1]] por hiperglucemia en analítica de rutina.
IMC 34, perímetro abdominal 108 cm.
HbA1c 8,1%. Se confirma diabetes mellitus tipo 2.
Se inicia metformina y educación diabetológica con la [[enfermera|P|SAN|2221.3]] del centro.
Practica [[natación|A|PAC|SCTID: 228447005]] dos días por semana desde el diagnóstico."""),
    ("caso_clinico_muestra_radiologia1", False, """Varón de 67 años, exminero, [[jubilado|S|PAC|SCTID: 105493001]] desde hace 12 años.
Trabajó como [[picador|P|PAC|8111.5]] en mina de carbón durante 25 años.
Radiografía de tórax: opacidades nodulares en lóbulos superiores.
TC de alta resolución: masas conglomeradas con calcificaciones.
Diagnóstico: silicosis complicada.
Cobra una [[pensión por invalidez|S|PAC|SCTID: 160981007]] desde el diagnóstico."""),
    ("caso_clinico_muestra_sin_menciones1", False, """Mujer de 25 años con dolor en fosa ilíaca derecha de 12 horas de evolución.
Náuseas sin vómitos, febrícula de 37,8 °C.
Blumberg positivo.
Leucocitosis con neutrofilia.
La ecografía muestra apéndice engrosado no compresible.
Se realiza apendicectomía laparoscópica sin complicaciones."""),
    ("caso_clinico_muestra_sin_menciones2", False, """Varón de 70 años con dolor torácico opresivo de 40 minutos de duración.
Electrocardiograma con elevación del ST en cara inferior.
Se activa el código infarto y se realiza angioplastia primaria con stent en coronaria derecha.
Evolución sin complicaciones.
Alta al cuarto día con doble antiagregación.
"""),
    ("caso_clinico_muestra_geriatria1", False, """Mujer de 88 años, [[institucionalizada|S|PAC|SCTID: 225800006]] en una residencia desde hace 3 años.
Las [[cuidadoras|P|OTR|5162.1]] refieren que desde hace dos días está más somnolienta y come menos.
Antecedentes de demencia tipo Alzheimer en fase moderada.
Temperatura 38,2 °C, crepitantes en base derecha.
Radiografía: condensación basal derecha.
Se trata como neumonía aspirativa con amoxicilina-clavulánico.
Su hijo, [[cuidador principal|S|FAM|SCTID: 407543004]] los fines de semana, es informado por teléfono."""),
    ("caso_clinico_muestra_traumatologia1", False, """Varón de 24 años, [[futbolista profesional|P|PAC|3421.1]], que sufre un giro forzado de rodilla derecha durante un partido.
Refiere chasquido y derrame inmediato.
Test de Lachman positivo.
La resonancia confirma rotura completa del ligamento cruzado anterior.
Se realiza plastia con injerto de isquiotibiales.
Rehabilitación con el [[fisioterapeuta|P|SAN|2264.3]] del club durante seis meses.
Vuelve a entrenar con el equipo a los siete meses."""),
    ("caso_clinico_muestra_psiquiatria4", False, """Mujer de 31 años, [[enfermera de quirófano|P|PAC|2221.3]], que consulta por ansiedad y despertares nocturnos.
Relaciona el inicio de los síntomas con el aumento de la carga asistencial y los turnos dobles.
Su pareja es [[mecánico|P|FAM|7231.1]] y trabaja en horario de mañana, por lo que apenas coinciden.
Niega consumo de tóxicos.
Se diagnostica trastorno de ansiedad generalizada.
Inicia terapia cognitivo-conductual con un [[psicólogo clínico|P|SAN|2634.2]] y técnicas de relajación.
Practica [[yoga|A|PAC|SCTID: 300758009]] en casa con una aplicación."""),
    ("caso_clinico_muestra_digestivo1", False, """Varón de 50 años, [[carnicero|P|PAC|7511.1]], con diarrea y dolor abdominal de cinco días.
Fiebre de 38,5 °C y deposiciones con sangre.
Coprocultivo positivo para Campylobacter jejuni.
Se trata con azitromicina con mejoría en 72 horas.
Se recomiendan medidas de higiene en la manipulación de carne cruda.
Sus [[empleados|S|OTR|SCTID: 106541005]] de la carnicería permanecen asintomáticos."""),
    ("caso_clinico_muestra_infecciosas2", False, """Mujer de 42 años, [[maestra de educación infantil|P|PAC|2342]], con exantema maculopapular y artralgias en manos.
Varios niños de su aula han tenido eritema infeccioso en el último mes.
Serología IgM positiva para parvovirus B19.
Tratamiento sintomático con antiinflamatorios.
Resolución de las artralgias en tres semanas.
El [[médico del trabajo|P|SAN|2212]] valora la reincorporación a las dos semanas."""),
    ("caso_clinico_muestra_sin_menciones3", False, """Niño de 3 años con fiebre de 4 días, conjuntivitis bilateral no purulenta y labios fisurados.
Adenopatía cervical de 2 cm.
Cumple criterios de enfermedad de Kawasaki.
Se administra inmunoglobulina intravenosa y ácido acetilsalicílico.
Ecocardiograma sin aneurismas coronarios.
"""),
    ("caso_clinico_muestra_psiquiatria5", False, """Motivo de consulta
Varón de 56 años que ingresa en el módulo de enfermería del centro penitenciario.
Antecedentes
Lleva cuatro años [[en prisión|S|PAC|SCTID: 105568001]]. Antes trabajaba como [[electricista|P|PAC|7411.1]] por cuenta propia.
Enfermedad actual
El [[funcionario de prisiones|P|OTR|5413]] de su módulo avisa por conducta extraña y aislamiento en la celda.
Exploración
Suspicaz, con alucinaciones auditivas que comentan su conducta.
Plan
Se inicia antipsicótico y se coordina con el [[psiquiatra consultor|P|SAN|2212]] del centro."""),
    ("caso_clinico_muestra_deporte1", False, """Varón de 44 años, [[abogado|P|PAC|2611.1]], con dolor en cara lateral del codo derecho de dos meses.
Juega al [[pádel|A|PAC|SCTID: 300758009]] cuatro veces por semana.
Dolor a la palpación del epicóndilo y a la extensión resistida de la muñeca.
Diagnóstico: epicondilitis lateral.
Se recomienda reposo deportivo relativo, cincha epicondílea y ejercicios excéntricos."""),
    ("caso_clinico_muestra_pediatria2", False, """Adolescente de 15 años que acude por dolor abdominal recurrente y absentismo escolar.
[[Repite 3º de la ESO|S|PAC|SCTID: 65853000]] y refiere problemas con sus [[compañeros de clase|S|OTR|SCTID: 65853000]].
El [[[[profesor|P|OTR|23]] de educación física|P|OTR|2330]] ha comunicado a la familia episodios de acoso.
Exploración física y analítica normales.
Se deriva a la unidad de salud mental infanto-juvenil."""),
    ("90000001_ES", True, """Hombre de 60 años, [[ganadero|P|PAC|6121.1]], que consulta por una lesión ulcerada en el dorso de la mano izquierda.
La lesión comenzó como una pápula indolora que evolucionó a escara negra en una semana.
Había manipulado una res muerta días antes.
El cultivo del exudado confirma Bacillus anthracis.
Tratamiento con ciprofloxacino durante 60 días con curación completa.
Se notifica el caso a Salud Pública y se avisa a los [[veterinarios|P|OTR|2250]] de la comarca."""),
    ("90000002_ES", True, """Mujer de 37 años, [[desempleada|S|PAC|SCTID: 73438004]] desde hace dos años, con astenia y pérdida de peso.
Tos productiva de un mes y sudoración nocturna.
Convive con su madre, [[pensionista|S|FAM|SCTID: 105493001]], y un sobrino de 4 años.
Baciloscopia de esputo positiva. Se inicia tratamiento antituberculoso.
La [[enfermera de salud pública|P|SAN|2221.3]] realiza el estudio de contactos en el domicilio.
"""),
]

# Public NORM vocabulary rows (ESCO codes and SNOMED CT concept ids with their Spanish labels,
# as in the MEDDOPROF valid-codes list).
VALID_CODES = [
    ("2211.1", "médico generalista/médica generalista", "médica generalista|médico generalista"),
    ("2212", "Médicos especialistas", ""),
    ("22", "Profesionales de la salud", ""),
    ("23", "Profesionales de la enseñanza", ""),
    ("2250", "Veterinarios", ""),
    ("2330", "Profesores de enseñanza secundaria", ""),
    ("2342", "Maestros preescolares", ""),
    ("2634.2", "psicólogo/psicóloga", "psicólogo|psicóloga"),
    ("2221.3", "enfermero especialista/enfermera especialista", "enfermero especialista|enfermera especialista"),
    ("5321.1.1", "auxiliar de enfermería", "auxiliar de clínica|auxiliar de enfermería"),
    ("2264.3", "fisioterapeuta", ""),
    ("2635", "Profesionales del trabajo social", ""),
    ("2635.3", "trabajador social/trabajadora social", "trabajador social|trabajadora social"),
    ("6130.2", "agricultor de producción mixta/agricultora de producción mixta", "agricultora de producción mixta|agricultor de producción mixta"),
    ("6121.1", "ganadero/ganadera", "granjero|granjera|ganadero|ganadera"),
    ("5412.1", "agente de policía", "agente de policía nacional|agente de policía local|policía"),
    ("5413", "Guardianes de prisión", ""),
    ("5414.1", "vigilante de seguridad", "guarda de seguridad"),
    ("3343.1", "empleado administrativo/empleada administrativa", "auxiliar administrativo|auxiliar administrativa|empleada administrativa|empleado administrativo"),
    ("5162.1", "cuidador/cuidadora", "cuidadora|cuidador"),
    ("5131.2", "camarero/camarera", ""),
    ("2341.1", "maestro de educación primaria/maestra de educación primaria", "maestro de educación primaria|maestra de educación primaria"),
    ("9112", "Limpiadores y asistentes de oficinas, hoteles y otros establecimientos", ""),
    ("5223", "Asistentes de venta de tiendas y almacenes", ""),
    ("3421.1", "atleta profesional", "deportista profesional|atleta profesional"),
    ("7112.1", "albañil", ""),
    ("5120.1", "cocinero/cocinera", ""),
    ("2611.1", "abogado/abogada", "abogado|abogada"),
    ("7115.1", "carpintero/carpintera", "carpintera|carpintero|ebanista"),
    ("8322.7", "taxista", "conductora de taxi|conductor de taxi"),
    ("8332.2", "conductor de vehículo de carga/conductora de vehículo de carga", "conductor de vehículo de carga|conductora de vehículo de carga"),
    ("7512.1", "panadero/panadera", "panadero|panadera"),
    ("7511.1", "carnicero/carnicera", "carnicero|carnicera"),
    ("7212.3", "soldador/soldadora", "soldador|soldadora"),
    ("8111.5", "minero de minería subterránea/minera de minería subterránea", "picador (minería)|picadora (minería)|minero|minera"),
    ("7411.1", "electricista", ""),
    ("7231.1", "mecánico de vehículos/mecánica de vehículos", "mecánico de coches|mecánica de coches"),
    ("SCTID: 106541005", "trabajador", ""),
    ("SCTID: 65853000", "estudiante", ""),
    ("SCTID: 73438004", "desempleado", ""),
    ("SCTID: 105493001", "retirado", ""),
    ("SCTID: 29962006", "incapacidad", ""),
    ("SCTID: 444168002", "ama de casa", ""),
    ("SCTID: 228447005", "activo físicamente", ""),
    ("SCTID: 407543004", "cuidador primario", ""),
    ("SCTID: 225800006", "institucionalizado", ""),
    ("SCTID: 300758009", "participa en un pasatiempo", ""),
    ("SCTID: 105568001", "en prisión", ""),
    ("SCTID: 32911000", "persona sin hogar", ""),
    ("SCTID: 160981007", "pensión por invalidez", ""),
]

# --------------------------------------------------------------------------------------------
# Gazetteer: (masculine singular, feminine singular or None, masculine plural, feminine plural
# or None). The lemma is the masculine singular, lower-cased, as in the ProfNER gazetteer.
# --------------------------------------------------------------------------------------------
GAZETTEER_FORMS = [
    ("médico", "médica", "médicos", "médicas"), ("enfermero", "enfermera", "enfermeros", "enfermeras"),
    ("sanitario", "sanitaria", "sanitarios", "sanitarias"), ("policía", None, "policías", None),
    ("bombero", "bombera", "bomberos", "bomberas"), ("profesor", "profesora", "profesores", "profesoras"),
    ("maestro", "maestra", "maestros", "maestras"), ("farmacéutico", "farmacéutica", "farmacéuticos", "farmacéuticas"),
    ("cajero", "cajera", "cajeros", "cajeras"), ("camionero", "camionera", "camioneros", "camioneras"),
    ("transportista", None, "transportistas", None), ("taxista", None, "taxistas", None),
    ("repartidor", "repartidora", "repartidores", "repartidoras"), ("rastreador", "rastreadora", "rastreadores", "rastreadoras"),
    ("alcalde", "alcaldesa", "alcaldes", "alcaldesas"), ("presidente", "presidenta", "presidentes", "presidentas"),
    ("ministro", "ministra", "ministros", "ministras"), ("consejero", "consejera", "consejeros", "consejeras"),
    ("diputado", "diputada", "diputados", "diputadas"), ("juez", "jueza", "jueces", "juezas"),
    ("fiscal", None, "fiscales", None), ("abogado", "abogada", "abogados", "abogadas"),
    ("periodista", None, "periodistas", None), ("científico", "científica", "científicos", "científicas"),
    ("investigador", "investigadora", "investigadores", "investigadoras"), ("epidemiólogo", "epidemióloga", "epidemiólogos", "epidemiólogas"),
    ("virólogo", "viróloga", "virólogos", "virólogas"), ("psicólogo", "psicóloga", "psicólogos", "psicólogas"),
    ("psiquiatra", None, "psiquiatras", None), ("pediatra", None, "pediatras", None),
    ("dentista", None, "dentistas", None), ("fisioterapeuta", None, "fisioterapeutas", None),
    ("matrona", None, "matronas", None), ("celador", "celadora", "celadores", "celadoras"),
    ("auxiliar", None, "auxiliares", None), ("cuidador", "cuidadora", "cuidadores", "cuidadoras"),
    ("limpiador", "limpiadora", "limpiadores", "limpiadoras"), ("barrendero", "barrendera", "barrenderos", "barrenderas"),
    ("camarero", "camarera", "camareros", "camareras"), ("cocinero", "cocinera", "cocineros", "cocineras"),
    ("panadero", "panadera", "panaderos", "panaderas"), ("carnicero", "carnicera", "carniceros", "carniceras"),
    ("agricultor", "agricultora", "agricultores", "agricultoras"), ("ganadero", "ganadera", "ganaderos", "ganaderas"),
    ("pescador", "pescadora", "pescadores", "pescadoras"), ("minero", "minera", "mineros", "mineras"),
    ("albañil", None, "albañiles", None), ("carpintero", "carpintera", "carpinteros", "carpinteras"),
    ("fontanero", "fontanera", "fontaneros", "fontaneras"), ("electricista", None, "electricistas", None),
    ("mecánico", "mecánica", "mecánicos", "mecánicas"), ("soldador", "soldadora", "soldadores", "soldadoras"),
    ("peluquero", "peluquera", "peluqueros", "peluqueras"), ("dependiente", "dependienta", "dependientes", "dependientas"),
    ("tendero", "tendera", "tenderos", "tenderas"), ("empresario", "empresaria", "empresarios", "empresarias"),
    ("veterinario", "veterinaria", "veterinarios", "veterinarias"), ("socorrista", None, "socorristas", None),
    ("militar", None, "militares", None), ("sacerdote", None, "sacerdotes", None),
    ("conductor", "conductora", "conductores", "conductoras"), ("informático", "informática", "informáticos", "informáticas"),
    ("funcionario", "funcionaria", "funcionarios", "funcionarias"), ("embajador", "embajadora", "embajadores", "embajadoras"),
    ("gobernador", "gobernadora", "gobernadores", "gobernadoras"), ("portavoz", None, "portavoces", None),
    ("secretario", "secretaria", "secretarios", "secretarias"), ("director", "directora", "directores", "directoras"),
    ("administrativo", "administrativa", "administrativos", "administrativas"), ("vigilante", None, "vigilantes", None),
    ("temporero", "temporera", "temporeros", "temporeras"), ("sindicalista", None, "sindicalistas", None),
    ("monitor", "monitora", "monitores", "monitoras"), ("doctor", "doctora", "doctores", "doctoras"),
    ("cirujano", "cirujana", "cirujanos", "cirujanas"), ("radiólogo", "radióloga", "radiólogos", "radiólogas"),
    ("dermatólogo", "dermatóloga", "dermatólogos", "dermatólogas"), ("neurólogo", "neuróloga", "neurólogos", "neurólogas"),
    ("trabajador social", "trabajadora social", "trabajadores sociales", "trabajadoras sociales"),
    ("auxiliar de enfermería", None, "auxiliares de enfermería", None),
    ("médico de familia", "médica de familia", "médicos de familia", "médicas de familia"),
    ("guardia civil", None, "guardias civiles", None), ("policía local", None, "policías locales", None),
    ("policía nacional", None, "policías nacionales", None),
    ("personal sanitario", None, None, None), ("personal de limpieza", None, None, None),
    ("controlador aéreo", "controladora aérea", "controladores aéreos", "controladoras aéreas"),
    ("camarera de piso", None, "camareras de piso", None),
    ("conductor de autobús", "conductora de autobús", "conductores de autobús", "conductoras de autobús"),
    ("profesional sanitario", None, "profesionales sanitarios", None),
    ("presidente del gobierno", "presidenta del gobierno", None, None),
    ("ministro de sanidad", "ministra de sanidad", None, None),
    ("médico residente", "médica residente", "médicos residentes", "médicas residentes"),
    ("funcionario de prisiones", "funcionaria de prisiones", "funcionarios de prisiones", "funcionarias de prisiones"),
]
# Work situations and titled (DeCS-like, capitalised) entries: (term, lemma).
GAZETTEER_EXTRA = [
    ("en paro", "en paro"), ("parado", "parado"), ("parados", "parado"), ("parada", "parado"),
    ("desempleado", "desempleado"), ("desempleada", "desempleado"), ("desempleados", "desempleado"),
    ("ERTE", "erte"), ("ERTEs", "erte"), ("teletrabajo", "teletrabajo"),
    ("autónomo", "autónomo"), ("autónoma", "autónomo"), ("autónomos", "autónomo"),
    ("jubilado", "jubilado"), ("jubilada", "jubilado"), ("jubilados", "jubilado"),
    ("pensionista", "pensionista"), ("pensionistas", "pensionista"),
    ("trabajador", "trabajador"), ("trabajadora", "trabajador"), ("trabajadores", "trabajador"),
    ("empleado", "empleado"), ("empleada", "empleado"), ("empleados", "empleado"),
    ("estudiante", "estudiante"), ("estudiantes", "estudiante"), ("becario", "becario"),
    ("becaria", "becario"), ("becarios", "becario"), ("ama de casa", "amo de casa"),
    ("amas de casa", "amo de casa"), ("baja laboral", "baja laboral"), ("despedido", "despedir"),
    ("Agentes de Salud Pública", "agente de salud público"), ("Auxiliares de Enfermería", "auxiliar de enfermería"),
    ("Enfermeras Obstétricas", "enfermero obstétrico"), ("Personal de Hospital", "personal de hospital"),
    ("Médicos de Atención Primaria", "médico de atención primario"), ("Técnicos de Laboratorio", "técnico de laboratorio"),
    ("Trabajadores de la Salud", "trabajador de el salud"), ("Voluntarios", "voluntario"),
]


# --------------------------------------------------------------------------------------------
# Parsing the inline markup
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Mention:
    start: int
    end: int
    type: str
    text: str
    cls: str | None = None
    code: str | None = None


_CLOSE = re.compile(r"\|([^\[\]|]+)(?:\|([^\[\]|]+))?(?:\|([^\[\]|]+))?\]\]")


def parse_marked(marked: str, *, meddoprof: bool = False) -> tuple[str, list[Mention]]:
    """Strip ``[[span|...]]`` markup; return the plain text and its mentions in opening order."""
    out: list[str] = []
    pos = 0  # length of the plain text written so far
    stack: list[tuple[int, int]] = []  # (plain-text start, order of opening)
    found: list[tuple[int, Mention]] = []
    opened = 0
    i = 0
    while i < len(marked):
        if marked.startswith("[[", i):
            stack.append((pos, opened))
            opened += 1
            i += 2
            continue
        m = _CLOSE.match(marked, i) if stack else None
        if m:
            start, order = stack.pop()
            span = "".join(out)[start:pos]
            fields = [g for g in m.groups() if g is not None]
            found.extend((order, mention) for mention in _mentions(start, pos, span, fields, meddoprof))
            i = m.end()
            continue
        out.append(marked[i])
        pos += 1
        i += 1
    if stack:
        raise ValueError(f"unclosed [[ in {marked[:60]!r}")
    found.sort(key=lambda pair: pair[0])
    return "".join(out), [mention for _, mention in found]


def _mentions(start: int, end: int, span: str, fields: list[str], meddoprof: bool) -> list[Mention]:
    if meddoprof:
        type_key, cls_key, code = fields
        return [Mention(start, end, TYPES[type_key], span, CLASSES[cls_key], code)]
    copies = 2 if fields[1:] == ["x2"] else 1
    return [Mention(start, end, TYPES[fields[0]], span)] * copies


# --------------------------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------------------------
def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        handle.write(text)


def _order_key(name: str) -> str:
    """A stable pseudo-random order (the real files are not sorted either)."""
    return hashlib.sha256(name.encode("utf-8")).hexdigest()


def tweet_id(index: int) -> str:
    """A 19-digit id of our own (prefix 19, so it never collides with a real 12... id)."""
    digest = int(hashlib.sha256(f"profner-sample-{index}".encode()).hexdigest(), 16)
    return str(19 * 10**17 + digest % 10**17)


def _ann_lines(mentions: list[Mention], label_of) -> str:
    return "".join(f"T{k}\t{label_of(m)} {m.start} {m.end}\t{m.text}\n"
                   for k, m in enumerate(mentions, start=1))


def all_tweets() -> list[tuple[str, str, list[Mention]]]:
    """(tweet id, text, mentions) in list order: hand-written first, then templated."""
    template_pos, template_neg = templated_tweets()
    marked = POSITIVE_TWEETS + NEGATIVE_TWEETS + template_pos + template_neg
    tweets = []
    for index, source in enumerate(marked):
        text, mentions = parse_marked(source)
        if len(mentions) > 1 and index % 3 == 0:
            mentions = mentions[::-1]  # brat T-numbers need not follow the text order
        tweets.append((tweet_id(index), text, mentions))
    return tweets


def split_of(index: int) -> str:
    return "valid" if index % 4 == 3 else "train"


def write_profner(root: Path) -> None:
    tweets = all_tweets()
    for split in ("train", "valid"):
        part = [t for i, t in enumerate(tweets) if split_of(i) == split]
        part.sort(key=lambda t: _order_key(t[0]))
        labels = ["tweet_id\tlabel\n"] + [f"{tid}\t{int(bool(ms))}\n" for tid, _, ms in part]
        _write(root / "subtask-1" / f"{split}.tsv", "".join(labels))
        rows = ["tweet_id\tbegin\tend\ttype\textraction\n"]
        rows += [f"{tid}\t{m.start}\t{m.end}\t{m.type}\t{m.text}\n"
                 for tid, _, ms in part for m in ms]
        rows += [f"{tid}\t-\t-\t-\t-\n" for tid, _, ms in part if not ms]
        _write(root / "subtask-2" / "tsv" / f"{split}.tsv", "".join(rows))
        for tid, text, mentions in part:
            brat = root / "subtask-2" / "brat" / split
            _write(brat / f"{tid}.txt", text)
            _write(brat / f"{tid}.ann", _ann_lines(mentions, lambda m: m.type))
    _write(root / "gazetteer" / "profner-gazetteer.tsv",
           "".join(f"{term}\t{lemma}\n" for term, lemma in gazetteer_rows()))


def gazetteer_rows() -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for forms in GAZETTEER_FORMS:
        lemma = forms[0].lower()
        rows.extend((form, lemma) for form in forms if form is not None)
    rows.extend(GAZETTEER_EXTRA)
    return sorted(set(rows), key=lambda row: (row[0].lower(), row[0]))


def _quote(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def all_cases() -> list[tuple[str, str, list[Mention]]]:
    cases = []
    for name, bom, marked in CASES:
        text, mentions = parse_marked(("\ufeff" if bom else "") + marked, meddoprof=True)
        cases.append((name, text, mentions))
    return cases


def write_meddoprof(root: Path) -> None:
    train = root / "meddoprof-training-set"
    norm_rows = []
    for name, text, mentions in all_cases():
        for task, label_of in (("task1", lambda m: m.type), ("task2", lambda m: m.cls)):
            _write(train / task / f"{name}.txt", text)
            _write(train / task / f"{name}.ann", _ann_lines(mentions, label_of))
        norm_rows += [(name, m) for m in mentions]
    norm_rows.sort(key=lambda row: _order_key(f"{row[0]}:{row[1].start}:{row[1].end}"))
    lines = ['"filename"\t"text"\t"span"\t"code"\n']
    lines += [f"{_quote(name)}\t{_quote(m.text)}\t{_quote(f'{m.start} {m.end}')}\t{_quote(m.code)}\n"
              for name, m in norm_rows]
    _write(train / "meddoprof-norm-train.tsv", "".join(lines))
    codes = ['"code"\t"label"\t"alternative_label"\n']
    codes += [f"{_quote(code)}\t{_quote(label)}\t{_quote(alt) if alt else ''}\n"
              for code, label, alt in VALID_CODES]
    _write(root / "meddoprof_valid_codes.tsv", "".join(codes))


def build(out_dir: Path) -> None:
    """(Re)write ``profner/`` and ``meddoprof/`` under ``out_dir``."""
    for name, writer in (("profner", write_profner), ("meddoprof", write_meddoprof)):
        target = out_dir / name
        if target.exists():
            shutil.rmtree(target)
        writer(target)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="output folder (default: the package)")
    build(parser.parse_args(argv).out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
